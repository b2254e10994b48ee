"""Continue on another device: a one-time, expiring link (and its QR code) that moves a
visitor's conversation to the device that opens it.

The link carries a random token; only its hash is stored. Opening it gives the new device a
fresh visitor cookie and retires the old one, whose open pages are sent back to the start.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import segno

from app.chat import gone
from app.chat.rooms import visitor_room
from app.chat.service import ChatService
from app.core.security import new_token, token_hash
from app.core.transactions import transaction
from app.errors import SohbetError
from app.models import Conversation, Handoff
from app.timefmt import utcnow

log = logging.getLogger("sohbet.chat.handoff")

HANDOFF_MINUTES = 10


class HandoffExpired(SohbetError):
    """The link was used already, has expired, or never existed."""

    status = 410


async def create_handoff(conv: Conversation) -> tuple[str, int]:
    """A new one-time token for this conversation and its lifetime in minutes."""
    token = new_token()
    now = utcnow()
    # One live link per conversation: a new one retires the ones shown before.
    await Handoff.filter(conversation_id=conv.id, used_at__isnull=True).update(used_at=now)
    await Handoff.create(
        token_hash=token_hash(token),
        conversation_id=conv.id,
        created_at=now,
        expires_at=now + timedelta(minutes=HANDOFF_MINUTES),
    )
    return token, HANDOFF_MINUTES


def qr_svg_data_uri(url: str) -> str:
    """The link as a QR code (SVG data URI; dark modules on white, readable in dark mode too)."""
    return str(segno.make(url, error="m").svg_data_uri(scale=5, border=2, dark="#111827"))


async def check_handoff(token: str) -> Handoff:
    """The token's row if it could still be redeemed (without using it); HandoffExpired if not."""
    if not token or len(token) > 128:
        raise HandoffExpired("handoff_expired")
    row = await Handoff.get_or_none(token_hash=token_hash(token))
    if row is None or row.used_at is not None or row.expires_at <= utcnow():
        raise HandoffExpired("handoff_expired")
    return row


async def redeem_handoff(chat: ChatService, token: str) -> tuple[Conversation, str]:
    """Use a token once: the conversation moves to a new visitor cookie (returned)."""
    row = await check_handoff(token)
    # Claimed with a conditional update, so two devices opening the link at once can't both win.
    claimed = await Handoff.filter(token_hash=row.token_hash, used_at__isnull=True).update(
        used_at=utcnow()
    )
    conv = await Conversation.get_or_none(id=row.conversation_id)
    if not claimed or conv is None:
        raise HandoffExpired("handoff_expired")
    cookie = new_token()
    async with transaction() as tx:
        await gone.remember(conv.token_hash, "moved", using_db=tx)
        conv.token_hash = token_hash(cookie)
        await conv.save(update_fields=["token_hash"], using_db=tx)
    log.info("conversation %s moved to another device", conv.cid)
    # The old device's pages reload and find no conversation; their sockets are cut, in every
    # process (with Redis, presence knows them all and a disconnect reaches their process).
    room = visitor_room(conv.id)
    await chat.fanout.sio.emit(
        "chat:closed", {"chat_id": conv.cid, "moved": True}, room=room, namespace="/chat"
    )
    for sid in await chat.fanout.presence.members(room):
        await chat.fanout.sio.disconnect(sid, namespace="/chat")
    # Its call socket (not counted in presence) hears no more rings for this conversation.
    await chat.fanout.sio.close_room(room, namespace="/call")
    return conv, cookie
