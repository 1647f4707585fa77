"""Generated tokens and passwords never begin with '-' (a command line would read them as options)."""

from __future__ import annotations

import secrets

import pytest

from app.services.auth import new_secret


def test_a_draw_beginning_with_a_dash_is_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    draws = iter(["-first", "-second", "third"])
    asked: list[int] = []

    def fake(nbytes: int) -> str:
        asked.append(nbytes)
        return next(draws)

    monkeypatch.setattr(secrets, "token_urlsafe", fake)
    assert new_secret(32) == "third"
    assert asked == [32, 32, 32]


def test_real_draws_are_url_safe_and_never_begin_with_a_dash() -> None:
    drawn = [new_secret(12) for _ in range(2000)]  # about 31 raw draws in 2000 begin with '-'
    assert all(not s.startswith("-") and len(s) == 16 for s in drawn)
    assert len(set(drawn)) == len(drawn)
