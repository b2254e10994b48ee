"""Domain errors raised by services and turned into a clear response in one place."""

from __future__ import annotations

from typing import Any


class SohbetError(Exception):
    """Base of every error a user may be shown; `code` keys the translated message."""

    status = 400

    def __init__(self, code: str, **params: Any) -> None:
        super().__init__(code)
        self.code = code
        self.params = params


class InvalidInput(SohbetError):
    """The request's content breaks a rule (empty, too long, wrong type)."""


class NotFound(SohbetError):
    """The thing does not exist, or belongs to someone else: both look the same."""

    status = 404


class Forbidden(SohbetError):
    """The caller is not allowed to do this."""

    status = 403


class TooMany(SohbetError):
    """A rate limit was reached; the message says when to try again."""

    status = 429


class Conflict(SohbetError):
    """The change clashes with what is there (a name in use, an invite already used)."""

    status = 409
