"""Visitor tokens whose conversation is gone: deleted by an operator, or moved to another
device. A page that comes back with one (a reload, a tab woken up, a socket refused) gets a
start page that says which, instead of a bare name form. Only the token's hash is kept, for
`KEPT`; older rows are dropped as new ones are written."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal, cast

from tortoise.backends.base.client import BaseDBAsyncClient

from app.core.security import token_hash
from app.models import GoneToken
from app.timefmt import utcnow

KEPT = timedelta(days=90)
Reason = Literal["ended", "moved"]


async def remember(
    hashed: str, reason: Reason, *, using_db: BaseDBAsyncClient | None = None
) -> None:
    """Note that the token with this hash no longer opens its conversation, and why."""
    now = utcnow()
    await GoneToken.filter(created_at__lt=now - KEPT).using_db(using_db).delete()
    await GoneToken.update_or_create(
        token_hash=hashed, defaults={"reason": reason, "created_at": now}, using_db=using_db
    )


async def reason_for(token: str | None) -> Reason | None:
    """Why this token opens nothing any more, if it once opened a conversation."""
    if not token or len(token) > 128:
        return None
    row = await GoneToken.get_or_none(token_hash=token_hash(token), created_at__gte=utcnow() - KEPT)
    if row is not None and row.reason in ("ended", "moved"):
        return cast(Reason, row.reason)
    return None
