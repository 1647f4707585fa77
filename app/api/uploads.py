"""Reading a submission from multipart form data: the spec part and one code file part.

WMLA clients send the spec as part `data` and the model under any field name (`file`, or the
file's own name); the native API takes `spec` (JSON or YAML, text or file) and `code`. Sizes are
checked before anything is parsed further; the code is kept in memory, never unpacked here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml
from fastapi import Request
from redis.exceptions import RedisError
from starlette.datastructures import UploadFile

from app.api.context import AppContext
from app.config import Settings
from app.fleet import live_workers
from app.services.auth import Principal
from app.services.errors import BadRequest, TooLarge
from app.services.experiments import submit_payload
from app.spec.algorithms import installed_plugins
from app.store.models import Experiment

FORM_LIMITS = {"max_files": 4, "max_fields": 16, "max_part_size": 4 * 1024 * 1024}


@dataclass
class Upload:
    spec: Any
    code: bytes
    filename: str


def _basename(name: str) -> str:
    return name.replace("\\", "/").rsplit("/", 1)[-1]


async def _form(request: Request, settings: Settings) -> Any:
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > settings.code_max_bytes + 8 * 1024 * 1024:
        raise TooLarge(
            f"request of {length} bytes is over the upload limit ({settings.code_max_bytes} bytes)"
        )
    return await request.form(**FORM_LIMITS)


async def _code_part(form: Any, settings: Settings, exclude: tuple[str, ...]) -> tuple[bytes, str]:
    files = [
        (key, value)
        for key, value in form.multi_items()
        if isinstance(value, UploadFile) and key not in exclude
    ]
    if not files:
        raise BadRequest(
            "file: a model file part is required (a .modelDir.tar archive or a script)", field="file"
        )
    if len(files) > 1:
        raise BadRequest(f"file: expected one model file part, got {len(files)}", field="file")
    key, upload = files[0]
    data = await upload.read(settings.code_max_bytes + 1)
    if len(data) > settings.code_max_bytes:
        raise TooLarge(f"file: over the {settings.code_max_bytes} byte limit", field="file")
    filename = _basename(upload.filename or key)
    if not filename or filename in (".", ".."):
        raise BadRequest("file: the part needs a file name", field="file")
    return data, filename


async def _text(value: Any) -> str:
    if isinstance(value, UploadFile):
        raw = await value.read(FORM_LIMITS["max_part_size"] + 1)
        if len(raw) > FORM_LIMITS["max_part_size"]:
            raise TooLarge("the spec part is too large")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("the spec part is not UTF-8 text") from None
    return str(value)


def _reject_surrogates(value: Any, field: str) -> None:
    """Text that cannot be UTF-8 (a lone surrogate from a JSON escape) is refused up front."""
    stack: list[Any] = [value]
    seen: set[int] = set()
    budget = 1_000_000
    while stack:
        item = stack.pop()
        if isinstance(item, dict | list):
            if id(item) in seen:  # YAML anchors make shared and even self-containing nodes
                continue
            seen.add(id(item))
        budget -= 1
        if budget < 0:
            raise BadRequest(f"{field}: too large", field=field)
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise BadRequest(f"{field}: contains text that is not valid Unicode", field=field) from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


async def wmla_upload(request: Request, settings: Settings) -> Upload:
    form = await _form(request, settings)
    if "data" not in form:
        raise BadRequest("data: required (the task definition as JSON)", field="data")
    text = await _text(form["data"])
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"data: not valid JSON: {exc}", field="data") from None
    except RecursionError:
        raise BadRequest("data: nested too deeply", field="data") from None
    _reject_surrogates(spec, "data")
    code, filename = await _code_part(form, settings, exclude=("data",))
    return Upload(spec=spec, code=code, filename=filename)


async def native_upload(request: Request, settings: Settings) -> Upload:
    form = await _form(request, settings)
    if "spec" not in form:
        raise BadRequest("spec: required (the experiment spec as JSON or YAML)", field="spec")
    text = await _text(form["spec"])
    try:
        spec = json.loads(text)  # JSON first: YAML mangles JSON's escaped surrogate pairs (emoji)
    except json.JSONDecodeError:
        try:
            spec = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise BadRequest(f"spec: not valid JSON or YAML: {exc}", field="spec") from None
        except RecursionError:
            raise BadRequest("spec: nested too deeply", field="spec") from None
    except RecursionError:
        raise BadRequest("spec: nested too deeply", field="spec") from None
    _reject_surrogates(spec, "spec")
    code, filename = await _code_part(form, settings, exclude=("spec",))
    return Upload(spec=spec, code=code, filename=filename)


def submit_upload(ctx: AppContext, user: Principal, upload: Upload) -> Experiment:
    """Store a parsed upload as the caller's experiment (SpecError/Conflict on bad input)."""
    with installed_plugins(ctx.store.plugin_names()):
        return _submit(ctx, user, upload)


def _submit(ctx: AppContext, user: Principal, upload: Upload) -> Experiment:
    return submit_payload(
        ctx.store,
        upload.spec,
        upload.code,
        upload.filename,
        owner=user.name,
        limits=ctx.settings.archive_limits(),
        cpu_only=ctx.cpu_only,
        has_gpus=ctx.has_gpus,
        pools=_pools(ctx),
    )


def _pools(ctx: AppContext) -> set[str]:
    """GPU types (worker pools) that connected workers serve; none known without a broker."""
    if ctx.redis is None:
        return set()
    try:
        return {w.gpu_type for w in live_workers(ctx.redis) if w.gpu_type}
    except RedisError:
        return set()
