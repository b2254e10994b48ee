"""Tokens, hashes and constant-time checks."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_token() -> str:
    """An unguessable token for a cookie (256 bits)."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the database keeps of a token: its SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()


def keyed_hash(key: str, value: str) -> str:
    """HMAC-SHA256 of a short secret (a login code), so a stolen table reveals nothing."""
    return hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()


def constant_time_equal(a: str, b: str) -> bool:
    """Constant-time string comparison."""
    return hmac.compare_digest(a.encode(), b.encode())


class PasswordCheck:
    """Holds only a salted scrypt hash of the admin password and compares against it."""

    def __init__(self, password: str) -> None:
        self._salt = secrets.token_bytes(16)
        self._hash = self._derive(password)

    def _derive(self, password: str) -> bytes:
        return hashlib.scrypt(password.encode(), salt=self._salt, n=2**14, r=8, p=1, dklen=32)

    def matches(self, attempt: str) -> bool:
        return hmac.compare_digest(self._derive(attempt), self._hash)


def new_code() -> str:
    """A 6-digit one-time code from the CSPRNG."""
    return f"{secrets.randbelow(1_000_000):06d}"
