"""Fixtures of the end-to-end tests (helpers live in e2e_support.py)."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from e2e_support import FaultyProxy, install
from support import Stack


@pytest.fixture(scope="session")
def python_sdks() -> None:
    install("python")


@pytest.fixture(scope="session")
def browser_deps() -> None:
    install("browser")


@pytest.fixture
def running_stack(stack: Stack) -> Stack:
    stack.start_collector()
    stack.start_pipeline()
    return stack


@pytest.fixture
def faulty_proxy(running_stack: Stack) -> Iterator[Any]:
    proxies: list[FaultyProxy] = []

    def make(script: list[str], retry_after: str | None = None) -> FaultyProxy:
        p = FaultyProxy(running_stack.url, script, retry_after)
        proxies.append(p)
        return p

    yield make
    for p in proxies:
        p.close()
