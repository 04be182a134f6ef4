"""Tidegate's threads are named in the OS, so per-thread tools (top -H, perf, /proc) tell them apart."""

from __future__ import annotations

import doctest
import sys
import threading
from pathlib import Path

import pytest

from tidegate import threads

linux = pytest.mark.skipif(sys.platform != "linux", reason="thread names are read from /proc")


def _comm(native_id: int) -> str:
    return Path(f"/proc/self/task/{native_id}/comm").read_text().strip()


def test_docstring_examples() -> None:
    assert doctest.testmod(threads).failed == 0


@linux
def test_a_thread_carries_its_name_into_the_os() -> None:
    seen: list[str] = []
    t = threads.Thread(target=lambda: seen.append(_comm(threading.get_native_id())), name="tidegate-deliver_0")
    t.start()
    t.join()
    assert seen == ["tg-deliver_0"]


@linux
def test_pool_threads_are_named_too() -> None:
    with threads.executor("tidegate-archive-batch") as pool:
        assert pool.submit(lambda: _comm(threading.get_native_id())).result() == "tg-archive-batc"
    assert threads.os_name("not-ours") == "not-ours"
