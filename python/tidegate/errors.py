"""The one exception tree of Tidegate.

Every error a user can meet derives from :class:`TidegateError` and says what was wrong, where
and what to do.
"""

from __future__ import annotations

__all__ = ["TidegateError", "ConfigError", "RequestRejected", "PolicyError", "DeliveryError"]


class TidegateError(Exception):
    """Base class of every error Tidegate raises on purpose."""


class ConfigError(TidegateError):
    """The configuration is invalid: the message names the file, line and key.

    One error can carry the other problems found in the same file (``also``), so that a user
    fixes them in one go; ``file``, ``line`` and ``key`` are the first problem's, and the text
    has a line per problem."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None, key: str | None = None):
        self.file = file
        self.line = line
        self.key = key
        where = ":".join(str(p) for p in (file, line) if p is not None)
        prefix = f"{where}: " if where else ""
        if key:
            prefix += f"[{key}] "
        super().__init__(prefix + message)
        self.message = message
        self.also: list[ConfigError] = []

    @classmethod
    def of_all(cls, problems: list[ConfigError]) -> ConfigError:
        """The first of ``problems``, carrying the rest."""
        first = problems[0]
        first.also = problems[1:]
        return first

    def lines(self) -> list[str]:
        return [str(self.args[0]), *(str(e.args[0]) for e in self.also)]

    def __str__(self) -> str:
        return "\n".join(self.lines())


class RequestRejected(TidegateError):
    """A collector request was refused whole; nothing of it was written.

    ``status`` is the HTTP status to answer with, ``code`` a stable machine-readable reason.
    """

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class PolicyError(TidegateError):
    """A policy (tracking plan, PII or consent rule) cannot be compiled or applied."""


class DeliveryError(TidegateError):
    """A destination failed to accept a batch; the batch is retried, never dropped."""
