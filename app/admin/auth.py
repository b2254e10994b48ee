"""Operator login: the admin password, then a second factor: a 6-digit one-time code delivered
out of band, or (once enrolled) a code from the authenticator app or a recovery code.

Codes come from the CSPRNG, are stored as an HMAC, are single use, expire after 5 minutes and
allow 5 tries; a browser can only redeem the code it asked for (its challenge cookie). The
authenticator app's codes and recovery codes are tried against that same challenge and its tries.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

from tortoise.expressions import F

from app.admin.authenticator import MAX_CODE_LENGTH, Authenticator
from app.config import Settings
from app.core.ratelimit import Limiter
from app.core.security import (
    PasswordCheck,
    constant_time_equal,
    keyed_hash,
    new_code,
    new_token,
    token_hash,
)
from app.core.transactions import one_at_a_time, transaction
from app.errors import InvalidInput, TooMany
from app.models import AdminSession, LoginCode, TgOutbox
from app.timefmt import utcnow

log = logging.getLogger("sohbet.admin.auth")

CODE_TTL = timedelta(minutes=5)
CODE_TRIES = 5
# Every this many wrong codes in a row, the operator is told (Telegram, or the log).
WRONG_CODE_ALERT = 3

Method = Literal["telegram", "app"]
DeliveryState = Literal["log", "pending", "sent", "failing"]


class CodeDelivery(Protocol):
    """Where login codes go: the Telegram bot when configured, else the server log."""

    async def deliver_code(self, code: str, minutes: int) -> str | None:
        """Send the code; return the key of the Telegram outbox row that carries it, if any."""
        ...

    async def failed_logins(self, count: int, client: str) -> None: ...


class LogDelivery:
    """Delivery for a server with no Telegram: the code is written to the server log."""

    async def deliver_code(self, code: str, minutes: int) -> str | None:
        log.warning("LOGIN CODE %s (valid %d minutes; Telegram is not configured)", code, minutes)
        return None

    async def failed_logins(self, count: int, client: str) -> None:
        log.warning("%d wrong login codes in a row (last from %s)", count, client)


@dataclass(frozen=True)
class SessionInfo:
    token_hash: str
    csrf_token: str
    expires_at: datetime


class AdminAuth:
    """Password check, code issue and redemption, and session lookup."""

    def __init__(
        self,
        settings: Settings,
        delivery: CodeDelivery,
        limiter: Limiter,
        authenticator: Authenticator | None = None,
    ) -> None:
        self.settings = settings
        self.delivery = delivery
        issuer = f"Sohbet {settings.operator_name}"
        self.authenticator = authenticator or Authenticator(issuer, limiter)
        self._password = PasswordCheck(settings.admin_password)
        self._password_tries = limiter.budget("password_tries", 10, 15 * 60)
        self._wrong_codes = 0
        secure = settings.cookie_secure
        # The __Host- prefix pins the cookie to this host and path "/", and needs Secure.
        self.cookie_name = "__Host-sohbet_admin" if secure else "sohbet_admin"
        self.challenge_cookie = "__Host-sohbet_login" if secure else "sohbet_login"

    async def request_code(self, password: object, client: str) -> str:
        """Check the password and send a fresh code; return the browser's challenge token."""
        # 10 wrong passwords per 15 minutes per client address. The try is counted before the
        # comparison, atomically, so parallel guesses on any process share the budget; a right
        # password takes its count back, so only wrong ones limit the operator.
        wait = await self._password_tries.hit(client)
        if wait:
            raise TooMany("too_many_attempts", minutes=max(1, int(wait // 60) + 1))
        if not isinstance(password, str) or not self._password.matches(password):
            raise InvalidInput("wrong_password")
        await self._password_tries.refund(client)
        code = new_code()
        challenge = new_token()
        # Counted from the codes' own rows, one request at a time on every process, so
        # parallel requests cannot all pass the count.
        async with transaction() as tx:
            await one_at_a_time(tx, "sohbet:login_codes")
            now = utcnow()
            since = now - timedelta(hours=1)
            if await LoginCode.filter(created_at__gte=since).using_db(tx).count() >= (
                self.settings.login_codes_per_hour
            ):
                raise TooMany("too_many_codes", minutes=60)
            row = await LoginCode.create(
                using_db=tx,
                challenge_hash=token_hash(challenge),
                code_hash=keyed_hash(self.settings.secret_key, code),
                created_at=now,
                expires_at=now + CODE_TTL,
            )
        key = await self.delivery.deliver_code(code, int(CODE_TTL.total_seconds() // 60))
        if key:
            await LoginCode.filter(id=row.id).update(delivery_key=key)
        return challenge

    async def delivery_state(self, challenge: str | None) -> DeliveryState | None:
        """How a live challenge's code is getting on: in the log, sent, pending, or failing."""
        row = await self._live_challenge(challenge)
        if row is None:
            return None
        if not row.delivery_key:
            return "log"
        item = await TgOutbox.get_or_none(dedupe_key=row.delivery_key)
        if item is None or item.status == "sent":
            return "sent"
        if item.status != "pending" or item.last_error:
            return "failing"
        # Not tried yet, but queued behind sends that are failing: it will not go out soon.
        behind = TgOutbox.filter(status="pending", id__lt=item.id).exclude(last_error="")
        return "failing" if await behind.exists() else "pending"

    async def redeem_code(
        self, challenge: str | None, code: object, client: str = "?", method: Method = "telegram"
    ) -> str:
        """Trade a correct second factor for a new session token (5 tries per challenge).

        `method` "telegram" takes the one-time code; "app" takes a code from the authenticator
        app or a recovery code.
        """
        if not isinstance(code, str):
            raise InvalidInput("code_invalid")
        row = await self._live_challenge(challenge)
        if row is None:
            raise InvalidInput("code_invalid")
        # Count the try before comparing, atomically, so parallel guesses share the budget.
        counted = await LoginCode.filter(id=row.id, attempts__lt=CODE_TRIES).update(
            attempts=F("attempts") + 1
        )
        if not counted:
            raise TooMany("code_tries")
        if not await self._passes(row, code, method):
            self._wrong_codes += 1
            if self._wrong_codes % WRONG_CODE_ALERT == 0:
                await self.delivery.failed_logins(self._wrong_codes, client)
            if row.attempts + 1 >= CODE_TRIES:
                raise TooMany("code_tries")
            raise InvalidInput("code_invalid")
        now = utcnow()
        claimed = await LoginCode.filter(id=row.id, used_at__isnull=True).update(used_at=now)
        if not claimed:
            raise InvalidInput("code_invalid")
        self._wrong_codes = 0
        token = new_token()
        await AdminSession.create(
            token_hash=token_hash(token),
            csrf_token=new_token(),
            created_at=now,
            expires_at=now + timedelta(hours=self.settings.admin_session_hours),
        )
        log.info("operator signed in (%s)", method)
        return token

    async def challenge_open(self, challenge: str | None) -> bool:
        """Whether a code typed now for this challenge would count as one of its tries."""
        row = await self._live_challenge(challenge)
        return row is not None and row.attempts < CODE_TRIES

    async def _live_challenge(self, challenge: str | None) -> LoginCode | None:
        if not challenge or len(challenge) > 128:
            return None
        row = await LoginCode.get_or_none(challenge_hash=token_hash(challenge))
        if row is None or row.used_at is not None or row.expires_at <= utcnow():
            return None
        return row

    async def _passes(self, row: LoginCode, code: str, method: Method) -> bool:
        if method == "app":
            return len(code) <= MAX_CODE_LENGTH and await self.authenticator.check(code)
        attempt = "".join(ch for ch in code if ch.isdigit())
        return constant_time_equal(keyed_hash(self.settings.secret_key, attempt), row.code_hash)

    async def session_for(self, token: str | None) -> SessionInfo | None:
        """The live session a cookie names, if any."""
        if not token or len(token) > 128:
            return None
        row = await AdminSession.get_or_none(token_hash=token_hash(token))
        if row is None or row.expires_at <= utcnow():
            return None
        return SessionInfo(row.token_hash, row.csrf_token, row.expires_at)

    async def end_session(self, token: str | None) -> None:
        """Log out: the session row is deleted, so the cookie is worthless even if kept."""
        if token:
            await AdminSession.filter(token_hash=token_hash(token)).delete()
