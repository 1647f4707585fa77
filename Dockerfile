# hpo-queue images. `cpu`: API, coordinator, Flower and CPU workers (CPU build of torch).
# A CUDA target for GPU workers comes with the GPU fleet work.
FROM python:3.11-slim AS base
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 HPO_HOME=/data/hpo
WORKDIR /opt/hpo
COPY pyproject.toml README.md ./
COPY app ./app
COPY workers ./workers

FROM base AS cpu
# torch first, from the CPU index: an unpinned torch from PyPI pulls several GB of CUDA wheels.
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" \
 && pip install ".[worker]"
COPY examples ./examples
RUN useradd --create-home hpo && mkdir -p /data/hpo && chown hpo /data/hpo
USER hpo
CMD ["hpo", "--help"]
