"""How the commands word what they print."""

from __future__ import annotations

__all__ = ["counted"]


def counted(n: int | float, noun: str, plural: str | None = None) -> str:
    """``n`` and ``noun``, in the plural unless ``n`` is 1.

    >>> counted(1, "destination"), counted(2, "problem"), counted(0, "entry", "entries")
    ('1 destination', '2 problems', '0 entries')
    """
    return f"{n:.0f} {noun if n == 1 else plural or noun + 's'}"
