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
from concurrent.futures import ThreadPoolExecutor

__all__ = ["Thread", "executor", "name_this_thread", "os_name"]

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


def executor(prefix: str, max_workers: int = 1) -> ThreadPoolExecutor:
    """A pool whose threads (``<prefix>_<n>``) are named in the OS too."""
    return ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=prefix, initializer=name_this_thread)
