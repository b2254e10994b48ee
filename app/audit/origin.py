"""Who is acting: the one place that turns a panel session or a Telegram user into an actor.

A panel session is its operator's (`Actor(operator id, name)`). An update from the admin chat is
the operator's linked to its Telegram user (`telegram_operator`; the quick start's rule for a
group nobody has linked yet is in app/telegram/gate.py, which drops everyone else's updates).
"""

from __future__ import annotations

from quart import g

from app.admin.auth import SessionInfo
from app.audit.trail import Actor, Origin, Surface
from app.config import Settings
from app.core.security import keyed_hash
from app.models import Operator
from app.web import client_address, services

# Nobody known: a failed sign-in names no operator.
NOBODY = Actor(None, "")


def address_hash(settings: Settings, address: str) -> str:
    """The address as the app stores addresses anywhere (Conversation.client_hash): a keyed
    hash, so the table never holds an IP, yet the same address always gives the same value."""
    return keyed_hash(settings.secret_key, address) if address else ""


def session_actor(settings: Settings, session: SessionInfo | None) -> Actor:
    """The operator a panel session belongs to (no session: nobody)."""
    if session is None:
        return NOBODY
    return Actor(session.operator_id, session.operator.name)


async def telegram_operator(user_id: int | None) -> Operator | None:
    """The active operator a Telegram user in the admin chat acts as, or None (a stranger).

    The operator linked to that user; or, while the owner is the only active operator and no
    active operator has linked a Telegram account (the quick start in a group), the owner.
    """
    if user_id is None:
        return None
    linked = await Operator.get_or_none(telegram_user_id=user_id)
    if linked is not None:
        return linked if linked.active else None
    if await Operator.exists(active=True, telegram_user_id__isnull=False):
        return None
    active = await Operator.filter(active=True).order_by("id").limit(2)
    if len(active) == 1 and active[0].role == "owner":
        return active[0]
    return None


async def telegram_actor(settings: Settings, user_id: int | None, full_name: str) -> Actor:
    """The operator behind a Telegram user in the admin chat (by name only if none is)."""
    operator = await telegram_operator(user_id)
    if operator is None:
        return Actor(None, full_name or settings.operator_name)
    return Actor(operator.id, operator.name)


def request_origin(session: SessionInfo | None = None, *, surface: Surface = "panel") -> Origin:
    """The actor of this request, with the client address: the signed-in operator (or the
    `session` given, e.g. the one a sign-in has just made); on a sign-in route, nobody yet."""
    settings = services().settings
    actor = session_actor(settings, session or g.get("admin"))
    return Origin(actor, surface, address_hash(settings, client_address()))


async def telegram_origin(settings: Settings, user_id: int | None, full_name: str) -> Origin:
    """The actor of a Telegram update (no address: Telegram does not tell us one)."""
    context: dict[str, object] = {"telegram_user": full_name}
    if user_id is not None:
        context["telegram_id"] = user_id
    actor = await telegram_actor(settings, user_id, full_name)
    return Origin(actor, "telegram", context=context)
