"""Writing the audit trail: one entry per operator action, in the action's own transaction.

Where the action is a database write in the chat service (deleting messages or a conversation,
closing, reopening, blocking), its entry is written in the same transaction: the action and its
entry commit together or not at all, so there is no action without its entry. Sign-in, sign-out
and the authenticator app are recorded right after they happened (`record_after`): the action
stands even if its entry cannot be written, and then the entry goes to the server log instead.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

from tortoise.backends.base.client import BaseDBAsyncClient

from app.i18n import N_
from app.models import AuditEntry
from app.timefmt import utcnow

log = logging.getLogger("sohbet.audit")

Surface = Literal["panel", "telegram", "api"]
SURFACES: tuple[str, ...] = get_args(Surface)

# The fixed set of actions, with what the owner's page calls them. Codes are stored: never
# rename one, add new ones at the end of their group.
ACTIONS: dict[str, str] = {
    "message_delete": N_("Deleted messages"),
    "conversation_delete": N_("Deleted a conversation"),
    "conversation_close": N_("Closed a conversation"),
    "conversation_reopen": N_("Reopened a conversation"),
    "visitor_block": N_("Blocked a visitor"),
    "visitor_unblock": N_("Unblocked a visitor"),
    "signin": N_("Signed in"),
    "signin_failed": N_("Failed sign-in"),
    "signout": N_("Signed out"),
    "totp_enrol": N_("Set up an authenticator app"),
    "totp_remove": N_("Turned off the authenticator app"),
    "totp_recovery": N_("Made new recovery codes"),
    "operator_invite": N_("Invited an operator"),
    "invite_revoke": N_("Revoked an invitation"),
    "operator_join": N_("Joined the team"),
    "operator_deactivate": N_("Deactivated an operator"),
    "operator_reactivate": N_("Reactivated an operator"),
    "telegram_link": N_("Linked a Telegram account"),
    "reply_create": N_("Added a saved reply"),
    "reply_update": N_("Changed a saved reply"),
    "reply_delete": N_("Deleted a saved reply"),
    "widget_origin_add": N_("Allowed a site to show the widget"),
    "widget_origin_remove": N_("Removed a site from the widget's list"),
    "telegram_stranger": N_("Wrote in the Telegram group without being an operator"),
    "conversation_take": N_("Took a conversation"),
    "conversation_transfer": N_("Transferred a conversation"),
    "conversation_release": N_("Released a conversation"),
    "auto_assign_setting": N_("Changed automatic assignment"),
}
SURFACE_LABELS: dict[str, str] = {
    "panel": N_("Panel"),
    "telegram": N_("Telegram"),
    "api": N_("API"),
}

MAX_TARGET = 200
MAX_NAME = 64


@dataclass(frozen=True)
class Actor:
    """Who acted: the operator's id (None for the single admin of today) and name, as snapshots."""

    id: int | None
    name: str


@dataclass(frozen=True)
class Origin:
    """Who acted, where (panel, Telegram, API) and from which address (its keyed hash)."""

    actor: Actor
    surface: Surface
    address: str = ""
    # What else identifies the actor on that surface (the Telegram user), kept in the detail.
    context: Mapping[str, object] = field(default_factory=dict)


def _detail_json(origin: Origin, detail: Mapping[str, object] | None) -> str:
    merged = {**origin.context, **(detail or {})}
    if not merged:
        return ""
    # default=str: whatever a caller passes, the entry is written (never an error mid-action).
    return json.dumps(merged, ensure_ascii=False, sort_keys=True, default=str)


async def record(
    action: str,
    *,
    by: Origin,
    target: str = "",
    detail: Mapping[str, object] | None = None,
    using_db: BaseDBAsyncClient | None = None,
) -> AuditEntry:
    """Append one entry; pass the action's transaction as `using_db` so both commit together."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    if by.surface not in SURFACES:
        raise ValueError(f"unknown audit surface {by.surface!r}")
    return await AuditEntry.create(
        using_db=using_db,
        at=utcnow(),
        actor_id=by.actor.id,
        actor_name=by.actor.name[:MAX_NAME],
        action=action,
        target=target[:MAX_TARGET],
        detail=_detail_json(by, detail),
        address=by.address,
        surface=by.surface,
    )


async def record_after(
    action: str,
    *,
    by: Origin,
    target: str = "",
    detail: Mapping[str, object] | None = None,
) -> None:
    """`record` for an action that has already happened: a failure to write the entry never
    undoes or fails it; the entry is then written to the server log."""
    try:
        await record(action, by=by, target=target, detail=detail)
    except Exception:
        log.exception(
            "audit entry not stored: action=%s actor=%s surface=%s target=%s detail=%s",
            action,
            by.actor.name,
            by.surface,
            target,
            _detail_json(by, detail),
        )
