"""Who is acting: the one place that turns a panel session or a Telegram user into an actor.

A panel session is its operator's (`Actor(operator id, name)`). A message from the admin chat is
still the owner's by name (`Actor(None, OPERATOR_NAME)`) until Telegram replies are attributed
to the operator linked to the Telegram user.
"""

from __future__ import annotations

from quart import g

from app.admin.auth import SessionInfo
from app.audit.trail import Actor, Origin, Surface
from app.config import Settings
from app.core.security import keyed_hash
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


def telegram_actor(settings: Settings, user_id: int | None, full_name: str) -> Actor:
    """The operator behind a Telegram user in the admin chat (today: the admin)."""
    return Actor(None, settings.operator_name)


def request_origin(session: SessionInfo | None = None, *, surface: Surface = "panel") -> Origin:
    """The actor of this request, with the client address: the signed-in operator (or the
    `session` given, e.g. the one a sign-in has just made); on a sign-in route, nobody yet."""
    settings = services().settings
    actor = session_actor(settings, session or g.get("admin"))
    return Origin(actor, surface, address_hash(settings, client_address()))


def telegram_origin(settings: Settings, user_id: int | None, full_name: str) -> Origin:
    """The actor of a Telegram update (no address: Telegram does not tell us one)."""
    context: dict[str, object] = {"telegram_user": full_name}
    if user_id is not None:
        context["telegram_id"] = user_id
    return Origin(telegram_actor(settings, user_id, full_name), "telegram", context=context)
