"""Tidegate's threads carry their names into the OS, so ``top -H``, ``ps -L``, ``perf``,
``py-spy`` and ``/proc/<pid>/task/*/comm`` tell the deliver, govern and archive threads apart
(Python before 3.14 leaves every thread named ``python``).

The OS name is the Python name with ``tidegate-`` shortened to ``tg-``, cut to the 15 bytes
Linux keeps: ``tidegate-deliver_0`` → ``tg-deliver_0``.

>>> os_name("tidegate-archive-batch_0")
'tg-archive-batc'
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
import time
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

__all__ = ["Executor", "Thread", "executor", "longest_task", "name_this_thread", "os_name"]

_PR_SET_NAME = 15
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if sys.platform == "linux" else None


def os_name(name: str) -> str:
    """The name a thread called ``name`` gets in the OS."""
    if name.startswith("tidegate-"):
        name = "tg-" + name.removeprefix("tidegate-")
    return name.encode()[:15].decode(errors="ignore")


def name_this_thread() -> None:
    """Name the calling thread in the OS after its Python name (Linux; elsewhere nothing)."""
    if _libc is not None:
        _libc.prctl(_PR_SET_NAME, os_name(threading.current_thread().name).encode(), 0, 0, 0)


class Thread(threading.Thread):
    """A thread named in the OS too."""

    def run(self) -> None:
        name_this_thread()
        super().run()


class Executor(ThreadPoolExecutor):
    """A pool whose threads (``<prefix>_<n>``) are named in the OS too, and which knows since
    when each of them runs its current task (see `longest_task`)."""

    def __init__(self, prefix: str, max_workers: int = 1):
        super().__init__(max_workers=max_workers, thread_name_prefix=prefix, initializer=name_this_thread)
        self._running: dict[int, tuple[str, float]] = {}  # thread ident -> (thread name, started)
        _POOLS.add(self)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return super().submit(self._timed, fn, *args, **kwargs)

    def _timed(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        ident = threading.get_ident()
        self._running[ident] = (threading.current_thread().name, time.monotonic())
        try:
            return fn(*args, **kwargs)
        finally:
            del self._running[ident]

    def longest_task(self) -> tuple[str, float] | None:
        """(thread name, seconds) of the task running longest now; ``None`` when idle."""
        now = time.monotonic()
        running = list(self._running.values())
        return max(((name, now - started) for name, started in running), key=lambda t: t[1], default=None)


_POOLS: "weakref.WeakSet[Executor]" = weakref.WeakSet()


def executor(prefix: str, max_workers: int = 1) -> Executor:
    """A pool whose threads (``<prefix>_<n>``) are named in the OS too."""
    return Executor(prefix, max_workers)


def longest_task() -> tuple[str, float] | None:
    """Of every pool's running tasks, the one running longest: (thread name, seconds), or
    ``None`` when no task runs (what the pipeline's liveness looks at)."""
    found = [t for pool in list(_POOLS) if (t := pool.longest_task()) is not None]
    return max(found, key=lambda t: t[1], default=None)
