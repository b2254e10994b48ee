"""The second factor that needs no Telegram: an authenticator app (TOTP) and recovery codes.

Each operator has their own (the rows carry `operator_id`). The operator enrols from the panel:
a new secret is pending until a current code from the app confirms it, and then ten recovery
codes are shown once. At login, a TOTP code is accepted for the previous, current or next
30-second step, and never for a step already used.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import pyotp
from tortoise.backends.base.client import BaseDBAsyncClient

from app.core.ratelimit import Limiter
from app.core.security import constant_time_equal, token_hash
from app.core.transactions import transaction
from app.errors import TooMany
from app.models import RecoveryCode, TotpFactor
from app.timefmt import utcnow

RECOVERY_CODES = 10
# Longer than any authenticator or recovery code someone would type.
MAX_CODE_LENGTH = 64
# A recovery code is 16 characters of an unambiguous alphabet (80 bits), so its plain SHA-256
# is safe to store and needs no key that could change.
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
RECOVERY_LENGTH = 16
# One step either side forgives a phone clock a little off and the time it takes to type.
TOTP_WINDOW = 1
# Changing an enrolled app takes a current code: as many wrong ones as a login challenge allows.
CHANGE_TRIES = 5
CHANGE_WINDOW_SECONDS = 15 * 60


@dataclass(frozen=True)
class Enrolment:
    """A pending secret as the app takes it: the otpauth:// URI (the QR) and the secret typed."""

    secret: str
    uri: str


@dataclass(frozen=True)
class FactorStatus:
    """What the security page shows: enrolled or not, and how many recovery codes are left."""

    enrolled: bool
    recovery_left: int


def new_recovery_code() -> str:
    """A recovery code as shown: four groups of four, e.g. ``k7mq-2xdr-p9ta-c4hw``."""
    raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_LENGTH))
    return "-".join(raw[i : i + 4] for i in range(0, RECOVERY_LENGTH, 4))


def _normal(code: str) -> str:
    """A typed recovery code without spaces, dashes or capitals."""
    return "".join(ch for ch in code.lower() if ch.isalnum())


class Authenticator:
    """Enrolment, TOTP checks with replay refusal, and single-use recovery codes."""

    def __init__(self, issuer: str, limiter: Limiter) -> None:
        self.issuer = issuer
        self._change_tries = limiter.budget("change_tries", CHANGE_TRIES, CHANGE_WINDOW_SECONDS)

    async def authorize_change(self, operator_id: int, session: str, code: object) -> bool:
        """True if `code` is a current code from the enrolled app (or a recovery code): what a
        signed-in operator needs to change the app, so a stolen session cannot swap it."""
        # Counted before the check (parallel guesses share the budget); a right code takes its
        # count back, so only wrong ones limit.
        wait = await self._change_tries.hit(session)
        if wait:
            raise TooMany("too_many_attempts", minutes=max(1, int(wait // 60) + 1))
        if (
            isinstance(code, str)
            and len(code) <= MAX_CODE_LENGTH
            and await self.check(operator_id, code)
        ):
            await self._change_tries.refund(session)
            return True
        return False

    async def status(self, operator_id: int) -> FactorStatus:
        """Whether an authenticator app is enrolled, and how many recovery codes are unused."""
        enrolled = await self.enrolled(operator_id)
        unused = RecoveryCode.filter(operator_id=operator_id, used_at__isnull=True)
        left = await unused.count() if enrolled else 0
        return FactorStatus(enrolled, left)

    async def enrolled(self, operator_id: int) -> bool:
        """True once the operator's authenticator app has been confirmed."""
        return await TotpFactor.exists(operator_id=operator_id, confirmed_at__isnull=False)

    async def start(self, operator_id: int, label: str = "operator") -> Enrolment:
        """A fresh pending secret (any earlier pending one is dropped; an active one stays)."""
        secret = pyotp.random_base32()
        async with transaction() as tx:
            await (
                TotpFactor.filter(operator_id=operator_id, confirmed_at__isnull=True)
                .using_db(tx)
                .delete()
            )
            await TotpFactor.create(
                using_db=tx, secret=secret, created_at=utcnow(), operator_id=operator_id
            )
        return self._enrolment(secret, label)

    async def pending(self, operator_id: int, label: str = "operator") -> Enrolment | None:
        """The secret waiting for its confirming code, if any."""
        row = await self._pending_row(operator_id)
        return self._enrolment(row.secret, label) if row else None

    async def _pending_row(self, operator_id: int) -> TotpFactor | None:
        pending = TotpFactor.filter(operator_id=operator_id, confirmed_at__isnull=True)
        return await pending.order_by("-id").first()

    def _enrolment(self, secret: str, label: str) -> Enrolment:
        uri = pyotp.TOTP(secret).provisioning_uri(name=label, issuer_name=self.issuer)
        return Enrolment(secret, uri)

    async def confirm(self, operator_id: int, code: object) -> list[str] | None:
        """Activate the pending secret if `code` is current; return the new recovery codes."""
        row = await self._pending_row(operator_id)
        if row is None or not isinstance(code, str):
            return None
        step = _matching_step(row.secret, "".join(code.split()))
        if step is None:
            return None
        codes = [new_recovery_code() for _ in range(RECOVERY_CODES)]
        now = utcnow()
        async with transaction() as tx:
            # The confirming code counts as used: it cannot also sign someone in.
            pending = TotpFactor.filter(id=row.id, confirmed_at__isnull=True).using_db(tx)
            if not await pending.update(confirmed_at=now, last_step=step):
                return None
            others = TotpFactor.filter(operator_id=operator_id, id__not=row.id)
            await others.using_db(tx).delete()
            await _replace_recovery_codes(tx, operator_id, codes)
        return codes

    async def new_recovery_codes(self, operator_id: int) -> list[str]:
        """Replace every recovery code with ten new ones (shown once)."""
        codes = [new_recovery_code() for _ in range(RECOVERY_CODES)]
        async with transaction() as tx:
            await _replace_recovery_codes(tx, operator_id, codes)
        return codes

    async def remove(self, operator_id: int) -> None:
        """Turn the authenticator app off; its recovery codes go with it."""
        async with transaction() as tx:
            await TotpFactor.filter(operator_id=operator_id).using_db(tx).delete()
            await RecoveryCode.filter(operator_id=operator_id).using_db(tx).delete()

    async def check(self, operator_id: int, code: str) -> bool:
        """True if `code` is a current TOTP code not used before, or an unused recovery code."""
        digits = "".join(ch for ch in code if not ch.isspace())
        if digits.isdigit() and len(digits) == 6:
            return await self._check_totp(operator_id, digits)
        return await self._use_recovery(operator_id, code)

    async def _check_totp(self, operator_id: int, code: str) -> bool:
        row = await TotpFactor.filter(operator_id=operator_id, confirmed_at__isnull=False).first()
        if row is None:
            return False
        step = _matching_step(row.secret, code)
        if step is None:
            return False
        # Claimed atomically: of two logins with the same code, or a replay, only one wins.
        claimed = await TotpFactor.filter(id=row.id, last_step__lt=step).update(last_step=step)
        return bool(claimed)

    async def _use_recovery(self, operator_id: int, code: str) -> bool:
        normal = _normal(code)
        if len(normal) != RECOVERY_LENGTH:
            return False
        if not await self.enrolled(operator_id):
            return False
        used = await RecoveryCode.filter(
            operator_id=operator_id, code_hash=token_hash(normal), used_at__isnull=True
        ).update(used_at=utcnow())
        return bool(used)


async def _replace_recovery_codes(
    tx: BaseDBAsyncClient, operator_id: int, codes: list[str]
) -> None:
    """Store the hashes of `codes` in place of every earlier recovery code of the operator."""
    now = utcnow()
    await RecoveryCode.filter(operator_id=operator_id).using_db(tx).delete()
    rows = [
        RecoveryCode(code_hash=token_hash(_normal(c)), created_at=now, operator_id=operator_id)
        for c in codes
    ]
    await RecoveryCode.bulk_create(rows, using_db=tx)


def _matching_step(secret: str, code: str) -> int | None:
    """The time step (within the window) whose code `code` is, compared in constant time."""
    totp = pyotp.TOTP(secret)
    now = totp.timecode(utcnow())
    found = None
    for step in range(now - TOTP_WINDOW, now + TOTP_WINDOW + 1):
        if constant_time_equal(totp.generate_otp(step), code):
            found = step
    return found
