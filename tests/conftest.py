"""Fixtures shared by the test modules."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture()
def count_calls(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``count_calls(owner, name)`` wraps ``owner.name`` for the test (a method stays a
    method) and returns the list each call appends its positional arguments to."""

    def wrap(owner: Any, name: str) -> list[tuple[Any, ...]]:
        calls: list[tuple[Any, ...]] = []
        real = getattr(owner, name)

        def counting(*args: Any, **kwargs: Any) -> Any:
            calls.append(args)
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, counting)
        return calls

    return wrap
