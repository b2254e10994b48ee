"""Operator login: the operator's name and password, then a second factor: a 6-digit one-time
code sent to their own Telegram (the server log without a bot), or (once enrolled) a code from
their authenticator app or a recovery code.

Codes come from the CSPRNG, are stored as an HMAC, are single use, expire after 5 minutes and
allow 5 tries; a browser can only redeem the code it asked for (its challenge cookie). The
authenticator app's codes and recovery codes are tried against that same challenge and its tries.
Passwords, codes asked for and wrong codes are also limited per operator and per address (the
shared limiter, so every process counts them together). A deactivated operator's sessions and
codes stay refused with a message saying so.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

from tortoise.expressions import F

from app.admin.authenticator import MAX_CODE_LENGTH, Authenticator
from app.admin.operators import normal_name, password_matches_async
from app.config import Settings
from app.core.ratelimit import Limiter
from app.core.security import (
    constant_time_equal,
    hash_password,
    keyed_hash,
    new_code,
    new_token,
    token_hash,
)
from app.core.transactions import one_at_a_time, transaction
from app.errors import Forbidden, InvalidInput, TooMany
from app.models import AdminSession, LoginCode, Operator, TgOutbox
from app.timefmt import utcnow

log = logging.getLogger("sohbet.admin.auth")

CODE_TTL = timedelta(minutes=5)
CODE_TRIES = 5
# Every this many wrong codes in a row, the operator is told (Telegram, or the log).
WRONG_CODE_ALERT = 3
# Wrong passwords per 15 minutes per address, and per operator from all addresses together (a
# right one is not counted). The operator's is larger: guesses from one address meet that
# address's limit first, and someone who knows a name cannot lock its operator out from one
# place; many addresses guessing one password meet the operator's.
PASSWORD_TRIES = 10
OPERATOR_PASSWORD_TRIES = 30
# Wrong codes per 15 minutes over all of an operator's challenges (5 codes an hour, 5 tries
# each, and room for typos), and per address (a few operators behind one).
OPERATOR_CODE_TRIES = 25
ADDRESS_CODE_TRIES = 50
TRY_WINDOW = 15 * 60
# Codes asked for per hour from one address: a few operators may share an office's address.
ADDRESS_CODES_FACTOR = 3

Method = Literal["telegram", "app"]
DeliveryState = Literal["log", "pending", "sent", "failing", "none"]


@functools.cache
def _nobody() -> str:
    """Compared against when the name is unknown, so that costs the time a real check does."""
    return hash_password(new_token())


class CodeDelivery(Protocol):
    """Where login codes go: the Telegram bot when configured, else the server log."""

    def reaches(self, operator: Operator) -> bool:
        """True if a code can be sent to this operator."""
        ...

    async def deliver_code(self, code: str, minutes: int, operator: Operator) -> str | None:
        """Send the code; return the key of the Telegram outbox row that carries it, if any."""
        ...

    async def failed_logins(self, count: int, client: str, operator: Operator) -> None: ...


class LogDelivery:
    """Delivery for a server with no Telegram: the code is written to the server log."""

    def reaches(self, operator: Operator) -> bool:
        return True

    async def deliver_code(self, code: str, minutes: int, operator: Operator) -> str | None:
        log.warning(
            "LOGIN CODE %s for %s (valid %d minutes; Telegram is not configured)",
            code,
            operator.name,
            minutes,
        )
        return None

    async def failed_logins(self, count: int, client: str, operator: Operator) -> None:
        log.warning(
            "%d wrong login codes in a row for %s (last from %s)", count, operator.name, client
        )


@dataclass(frozen=True)
class SessionInfo:
    """A live session and whose it is."""

    token_hash: str
    csrf_token: str
    expires_at: datetime
    operator: Operator

    @property
    def operator_id(self) -> int:
        operator_id: int = self.operator.id
        return operator_id


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
        self._password_tries = limiter.budget("password_tries", PASSWORD_TRIES, TRY_WINDOW)
        self._operator_password_tries = limiter.budget(
            "operator_password_tries", OPERATOR_PASSWORD_TRIES, TRY_WINDOW
        )
        self._address_codes = limiter.budget(
            "address_codes", settings.login_codes_per_hour * ADDRESS_CODES_FACTOR, 3600
        )
        self._operator_code_tries = limiter.budget(
            "operator_code_tries", OPERATOR_CODE_TRIES, TRY_WINDOW
        )
        self._address_code_tries = limiter.budget(
            "address_code_tries", ADDRESS_CODE_TRIES, TRY_WINDOW
        )
        # Wrong codes in a row, per operator (for the alert to their Telegram).
        self._wrong_codes: dict[int, int] = {}
        secure = settings.cookie_secure
        # The __Host- prefix pins the cookie to this host and path "/", and needs Secure.
        self.cookie_name = "__Host-sohbet_admin" if secure else "sohbet_admin"
        self.challenge_cookie = "__Host-sohbet_login" if secure else "sohbet_login"

    async def request_code(self, password: object, client: str, name: object = "") -> str:
        """Check the operator's name and password and send a fresh code to them; return the
        browser's challenge token.

        An empty name means the only operator there is (the quick start's single login).
        """
        # Counted before the comparison, atomically, so parallel guesses on any process share
        # the budget; a right password takes its counts back, so only wrong ones limit.
        wait = await self._password_tries.hit(client)
        if wait:
            raise TooMany("too_many_attempts", minutes=_minutes(wait))
        try:
            operator = await self._operator_named(name)
        except InvalidInput:
            await self._password_tries.refund(client)  # a missing name is not a guess
            raise
        if operator is None:
            # No such operator looks like a wrong password, and takes as long.
            await password_matches_async(_nobody(), str(password))
            raise InvalidInput("wrong_password")
        key = str(operator.id)
        wait = await self._operator_password_tries.hit(key)
        if wait:
            await self._password_tries.refund(client)
            raise TooMany("too_many_attempts", minutes=_minutes(wait))
        if not isinstance(password, str) or not await password_matches_async(
            operator.password_hash, password
        ):
            raise InvalidInput("wrong_password")
        await self._password_tries.refund(client)
        await self._operator_password_tries.refund(key)
        if not operator.active:
            raise Forbidden("operator_deactivated")
        telegram = self.delivery.reaches(operator)
        if not telegram and not await self.authenticator.enrolled(operator.id):
            raise InvalidInput("no_second_factor")
        wait = await self._address_codes.hit(client)
        if wait:
            raise TooMany("too_many_codes", minutes=_minutes(wait))
        code = new_code()
        challenge = new_token()
        # Counted from the operator's codes' own rows, one request at a time on every process,
        # so parallel requests cannot all pass the count.
        async with transaction() as tx:
            await one_at_a_time(tx, f"sohbet:login_codes:{operator.id}")
            now = utcnow()
            since = now - timedelta(hours=1)
            recent = LoginCode.filter(operator_id=operator.id, created_at__gte=since)
            if await recent.using_db(tx).count() >= self.settings.login_codes_per_hour:
                raise TooMany("too_many_codes", minutes=60)
            row = await LoginCode.create(
                using_db=tx,
                challenge_hash=token_hash(challenge),
                code_hash=keyed_hash(self.settings.secret_key, code),
                created_at=now,
                expires_at=now + CODE_TTL,
                operator_id=operator.id,
                # No Telegram for this operator: only their authenticator app can answer.
                delivery_key="" if telegram else "none",
            )
        if telegram:
            minutes = int(CODE_TTL.total_seconds() // 60)
            sent = await self.delivery.deliver_code(code, minutes, operator)
            if sent:
                await LoginCode.filter(id=row.id).update(delivery_key=sent)
        return challenge

    async def _operator_named(self, name: object) -> Operator | None:
        """The operator a sign-in names; with no name, the only operator there is."""
        if isinstance(name, str) and name.strip():
            try:
                _, key = normal_name(name)
            except InvalidInput:
                return None
            return await Operator.get_or_none(name_key=key)
        everyone = await Operator.all().limit(2)
        if len(everyone) == 1:
            return everyone[0]
        raise InvalidInput("name_required")

    async def challenge_operator(self, challenge: str | None) -> Operator | None:
        """Whose code a live challenge is for."""
        row = await self._live_challenge(challenge)
        return await Operator.get_or_none(id=row.operator_id) if row is not None else None

    async def delivery_state(self, challenge: str | None) -> DeliveryState | None:
        """How a live challenge's code is getting on: in the log, sent, pending, or failing."""
        row = await self._live_challenge(challenge)
        if row is None:
            return None
        if not row.delivery_key:
            return "log"
        if row.delivery_key == "none":
            return "none"
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
        operator = await Operator.get_or_none(id=row.operator_id)
        if operator is None or not operator.active:
            raise Forbidden("operator_deactivated")
        # Count the try before comparing, atomically, so parallel guesses share the budget.
        counted = await LoginCode.filter(id=row.id, attempts__lt=CODE_TRIES).update(
            attempts=F("attempts") + 1
        )
        if not counted:
            raise TooMany("code_tries")
        key = str(operator.id)
        wait = await self._operator_code_tries.hit(key)
        if wait:
            raise TooMany("too_many_attempts", minutes=_minutes(wait))
        wait = await self._address_code_tries.hit(client)
        if wait:
            await self._operator_code_tries.refund(key)
            raise TooMany("too_many_attempts", minutes=_minutes(wait))
        if not await self._passes(row, code, method, operator.id):
            wrong = self._wrong_codes[operator.id] = self._wrong_codes.get(operator.id, 0) + 1
            if wrong % WRONG_CODE_ALERT == 0:
                await self.delivery.failed_logins(wrong, client, operator)
            if row.attempts + 1 >= CODE_TRIES:
                raise TooMany("code_tries")
            raise InvalidInput("code_invalid")
        await self._operator_code_tries.refund(key)
        await self._address_code_tries.refund(client)
        now = utcnow()
        claimed = await LoginCode.filter(id=row.id, used_at__isnull=True).update(used_at=now)
        if not claimed:
            raise InvalidInput("code_invalid")
        self._wrong_codes.pop(operator.id, None)
        token = new_token()
        await AdminSession.create(
            token_hash=token_hash(token),
            csrf_token=new_token(),
            created_at=now,
            expires_at=now + timedelta(hours=self.settings.admin_session_hours),
            operator_id=operator.id,
        )
        log.info("operator %s signed in (%s) from %s", operator.id, method, client)
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

    async def _passes(self, row: LoginCode, code: str, method: Method, operator_id: int) -> bool:
        if method == "app":
            return len(code) <= MAX_CODE_LENGTH and await self.authenticator.check(
                operator_id, code
            )
        attempt = "".join(ch for ch in code if ch.isdigit())
        return constant_time_equal(keyed_hash(self.settings.secret_key, attempt), row.code_hash)

    async def session_for(self, token: str | None) -> SessionInfo | None:
        """The live session a cookie names, if any (never a deactivated operator's)."""
        found = await self._session_row(token)
        if found is None:
            return None
        row, operator = found
        if operator is None or not operator.active:
            return None
        return SessionInfo(row.token_hash, row.csrf_token, row.expires_at, operator)

    async def refusal(self, token: str | None) -> str | None:
        """Why a cookie's unexpired session is refused ("operator_deactivated"), if it is."""
        found = await self._session_row(token)
        if found is None or (found[1] is not None and found[1].active):
            return None
        return "operator_deactivated"

    async def _session_row(self, token: str | None) -> tuple[AdminSession, Operator | None] | None:
        if not token or len(token) > 128:
            return None
        row = await AdminSession.get_or_none(token_hash=token_hash(token))
        if row is None or row.expires_at <= utcnow():
            return None
        if row.operator_id is None:
            # A row written without an operator (before operators) is the owner's.
            owner = await Operator.filter(role="owner").order_by("id").first()
            return row, owner
        return row, await Operator.get_or_none(id=row.operator_id)

    async def end_session(self, token: str | None) -> None:
        """Log out: the session row is deleted, so the cookie is worthless even if kept."""
        if token:
            await AdminSession.filter(token_hash=token_hash(token)).delete()


def _minutes(wait: float) -> int:
    """A budget's wait in whole minutes, as the message says it (at least 1)."""
    return max(1, int(wait // 60) + 1)
