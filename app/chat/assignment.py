"""Assignment: a conversation is unassigned or one operator's; take, transfer with a note, release.

Every change is one conditional UPDATE (`... WHERE assigned_operator_id IS NULL`, or `= the
operator it was read with`), so when two operators press "Take it" at the same moment on any
two processes, exactly one row changes: that operator wins, the other is told who has it. The
audit entry is written in the same transaction as the change.

The transfer note lives on the conversation row (`assign_note`), never in its messages: it is
rendered only in the panel's pane, so no visitor page, transcript or Telegram notice can show it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from tortoise.exceptions import IntegrityError

from app.audit.trail import Origin, record
from app.chat.fanout import Fanout
from app.chat.rooms import operator_room
from app.core.transactions import transaction
from app.errors import Conflict, InvalidInput, NotFound
from app.i18n import ERRORS, N_
from app.models import Conversation, Operator, OperatorRead, Setting
from app.timefmt import utcnow

log = logging.getLogger("sohbet.chat")

NOTE_MAX = 500
# Settings rows (JSON): whether new conversations are assigned automatically, and the operator
# the last one went to (the next goes to the next online operator after them, by id).
AUTO_KEY = "auto_assign"
LAST_KEY = "auto_assign_last"

ERRORS.update(
    {
        "assign_taken": N_("%(name)s has already taken this conversation."),
        "assign_changed": N_(
            "Someone changed this conversation's operator meanwhile; it is %(name)s's now."
        ),
        "assign_not_assigned": N_("This conversation is not assigned to anyone."),
        "assign_not_yours": N_(
            "This conversation is %(name)s's: only they or the owner can release or transfer it."
        ),
        "assign_bad_operator": N_("Choose an active operator to transfer the conversation to."),
        "assign_same_operator": N_("The conversation is already %(name)s's."),
        "assign_note_too_long": N_("The note is too long (at most %(limit)s characters)."),
    }
)


async def mark_read_by(operator_id: int, conversation_id: int, last_seq: int) -> None:
    """One operator has read a conversation up to `last_seq` (their own unread counts); the
    marker only moves forward."""
    changed = await OperatorRead.filter(
        operator_id=operator_id, conversation_id=conversation_id, last_seq__lt=last_seq
    ).update(last_seq=last_seq)
    if changed or await OperatorRead.exists(
        operator_id=operator_id, conversation_id=conversation_id
    ):
        return
    try:
        await OperatorRead.create(
            operator_id=operator_id, conversation_id=conversation_id, last_seq=last_seq
        )
    except IntegrityError:  # another tab of theirs made it meanwhile
        await OperatorRead.filter(
            operator_id=operator_id, conversation_id=conversation_id, last_seq__lt=last_seq
        ).update(last_seq=last_seq)


async def _name_of(operator_id: int | None) -> str:
    if operator_id is None:
        return ""
    op = await Operator.get_or_none(id=operator_id)
    return op.name if op is not None else "?"


class Assignment:
    """Take, transfer and release conversations; each change refreshes the list row."""

    def __init__(self, fanout: Fanout) -> None:
        self.fanout = fanout
        # Told after each change (the Telegram bridge edits the conversation's notice to name
        # its operator); a failure there never undoes the change.
        self.watchers: list[Callable[[Conversation], Awaitable[None]]] = []

    async def _changed(self, conv: Conversation) -> None:
        self.fanout.schedule_row(conv)
        for watcher in self.watchers:
            try:
                await watcher(conv)
            except Exception:
                log.exception("assignment watcher failed for %s", conv.cid)

    # Automatic assignment ----------------------------------------------------------------------

    async def auto_enabled(self) -> bool:
        row = await Setting.get_or_none(key=AUTO_KEY)
        return row is not None and row.value == "true"

    async def set_auto(self, enabled: bool, *, by: Origin) -> None:
        """The owner's switch: assign new conversations round-robin among online operators."""
        now = datetime.now(UTC)
        value = json.dumps(enabled)
        async with transaction() as tx:
            row = await Setting.select_for_update().using_db(tx).get_or_none(key=AUTO_KEY)
            if row is None:
                await Setting.create(key=AUTO_KEY, value=value, updated_at=now, using_db=tx)
            else:
                row.value, row.updated_at = value, now
                await row.save(using_db=tx, update_fields=["value", "updated_at"])
            await record("auto_assign_setting", by=by, detail={"enabled": enabled}, using_db=tx)

    async def auto_assign(self, conv: Conversation) -> None:
        """A new conversation goes to the next online operator after the last one given one
        (by id, wrapping round), when the owner turned automatic assignment on. Online: has a
        live operator socket (presence of their room). Nobody online: it stays unassigned."""
        if conv.synthetic or not await self.auto_enabled():
            return
        team = [op.id for op in await Operator.filter(active=True).order_by("id")]
        online = await self.fanout.presence.online_many([operator_room(i) for i in team])
        candidates = [i for i in team if online.get(operator_room(i))]
        if not candidates:
            return
        now = datetime.now(UTC)
        async with transaction() as tx:
            # Locked (PostgreSQL): two new conversations at once go to two operators in turn.
            last = await Setting.select_for_update().using_db(tx).get_or_none(key=LAST_KEY)
            previous = int(json.loads(last.value)) if last is not None else 0
            chosen = next((i for i in candidates if i > previous), candidates[0])
            changed = (
                await Conversation.filter(id=conv.id, assigned_operator_id__isnull=True)
                .using_db(tx)
                .update(assigned_operator_id=chosen, assigned_at=now)
            )
            if not changed:
                return
            if last is None:
                await Setting.create(
                    key=LAST_KEY, value=json.dumps(chosen), updated_at=now, using_db=tx
                )
            else:
                last.value, last.updated_at = json.dumps(chosen), now
                await last.save(using_db=tx, update_fields=["value", "updated_at"])
        conv.assigned_operator_id, conv.assigned_at = chosen, now
        for watcher in self.watchers:
            try:
                await watcher(conv)
            except Exception:
                log.exception("assignment watcher failed for %s", conv.cid)
        log.info("conversation %s assigned automatically to operator %d", conv.cid, chosen)

    async def _fresh(self, conv: Conversation) -> Conversation:
        fresh = await Conversation.get_or_none(id=conv.id)
        if fresh is None:
            raise NotFound("bad_chat")
        return fresh

    async def take(self, conv: Conversation, operator: Operator, *, by: Origin) -> Conversation:
        """Make the conversation `operator`'s if nobody has it; else Conflict naming who has."""
        now = utcnow()
        async with transaction() as tx:
            changed = (
                await Conversation.filter(id=conv.id, assigned_operator_id__isnull=True)
                .using_db(tx)
                .update(
                    assigned_operator_id=operator.id,
                    assigned_at=now,
                    assign_note="",
                    assign_note_by="",
                )
            )
            if changed:
                await record(
                    "conversation_take",
                    by=by,
                    target=conv.cid,
                    detail={"operator": operator.name},
                    using_db=tx,
                )
        fresh = await self._fresh(conv)
        if not changed:
            if fresh.assigned_operator_id == operator.id:
                return fresh  # already theirs: pressing twice changes nothing
            raise Conflict("assign_taken", name=await _name_of(fresh.assigned_operator_id))
        await self._changed(fresh)
        return fresh

    def _may_change(self, conv: Conversation, operator: Operator) -> bool:
        return conv.assigned_operator_id in (None, operator.id) or operator.is_owner

    async def release(self, conv: Conversation, operator: Operator, *, by: Origin) -> Conversation:
        """Make the conversation unassigned again (its operator, or the owner)."""
        current = await self._fresh(conv)
        if current.assigned_operator_id is None:
            raise InvalidInput("assign_not_assigned")
        if not self._may_change(current, operator):
            raise Conflict("assign_not_yours", name=await _name_of(current.assigned_operator_id))
        previous = await _name_of(current.assigned_operator_id)
        async with transaction() as tx:
            changed = (
                await Conversation.filter(
                    id=conv.id, assigned_operator_id=current.assigned_operator_id
                )
                .using_db(tx)
                .update(
                    assigned_operator_id=None, assigned_at=None, assign_note="", assign_note_by=""
                )
            )
            if changed:
                await record(
                    "conversation_release",
                    by=by,
                    target=conv.cid,
                    detail={"operator": previous},
                    using_db=tx,
                )
        fresh = await self._fresh(conv)
        if not changed:
            raise Conflict("assign_changed", name=await _name_of(fresh.assigned_operator_id))
        await self._changed(fresh)
        return fresh

    async def transfer(
        self,
        conv: Conversation,
        operator: Operator,
        target_id: object,
        note: object,
        *,
        by: Origin,
    ) -> Conversation:
        """Give the conversation to another active operator, with a note only operators see."""
        text = note.strip() if isinstance(note, str) else ""
        if len(text) > NOTE_MAX:
            raise InvalidInput("assign_note_too_long", limit=NOTE_MAX)
        try:
            target_key = int(str(target_id))
        except ValueError as exc:
            raise InvalidInput("assign_bad_operator") from exc
        target = await Operator.get_or_none(id=target_key)
        if target is None or not target.active:
            raise InvalidInput("assign_bad_operator")
        current = await self._fresh(conv)
        if current.assigned_operator_id == target.id:
            raise InvalidInput("assign_same_operator", name=target.name)
        if not self._may_change(current, operator):
            raise Conflict("assign_not_yours", name=await _name_of(current.assigned_operator_id))
        previous = await _name_of(current.assigned_operator_id)
        now: datetime = utcnow()
        async with transaction() as tx:
            query = Conversation.filter(id=conv.id)
            if current.assigned_operator_id is None:
                query = query.filter(assigned_operator_id__isnull=True)
            else:
                query = query.filter(assigned_operator_id=current.assigned_operator_id)
            changed = await query.using_db(tx).update(
                assigned_operator_id=target.id,
                assigned_at=now,
                assign_note=text,
                assign_note_by=operator.name[:64],
            )
            if changed:
                await record(
                    "conversation_transfer",
                    by=by,
                    target=conv.cid,
                    detail={"from": previous, "to": target.name, "note": text},
                    using_db=tx,
                )
        fresh = await self._fresh(conv)
        if not changed:
            raise Conflict("assign_changed", name=await _name_of(fresh.assigned_operator_id))
        await self._changed(fresh)
        return fresh
