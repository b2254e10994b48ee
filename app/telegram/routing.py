"""Which conversation an operator's Telegram message is for: a CID tag, its topic, or a reply."""

from __future__ import annotations

import re

from aiogram.types import Message

from app.models import Conversation, TgLink, TgTopic

CID_TAG = re.compile(r"\[\s*CID\s*:\s*([^\]\s]{1,64})\s*\]", re.IGNORECASE)


def topic_of(message: Message) -> int | None:
    """The forum topic a message was written in; a plain reply in a supergroup carries a
    thread id (the replied message's) without being in a topic, and that is not one."""
    return message.message_thread_id if message.is_topic_message else None


def client_id_for(message: Message) -> str:
    return f"tg-{message.chat.id}-{message.message_id}"


async def conversation_named(cid: str) -> Conversation | None:
    """The conversation a CID names, whatever its case (operators type "eda-b6ae")."""
    exact = await Conversation.get_or_none(cid=cid)
    if exact is not None or "-" not in cid:
        return exact
    # The random tail is ASCII, which every database compares without case; the name part
    # may not be (SQLite's LIKE folds ASCII only), so it is compared here.
    tail = cid.rpartition("-")[2]
    if not (tail.isascii() and tail.isalnum()):
        return None  # not a CID's tail (and no LIKE wildcards reach the query)
    wanted = cid.casefold()
    for conv in await Conversation.filter(cid__iendswith=f"-{tail}"):
        if conv.cid.casefold() == wanted:
            return conv
    return None


async def conversation_for(message: Message, text: str) -> tuple[Conversation | None, str]:
    """Which conversation a Telegram message answers, and its text without the CID tag."""
    tag = CID_TAG.search(text)
    if tag:
        conv = await conversation_named(tag.group(1))
        if conv is not None:
            return conv, (text[: tag.start()] + text[tag.end() :]).strip()
    thread = topic_of(message)
    if thread is not None:
        topic = await TgTopic.get_or_none(tg_chat_id=message.chat.id, thread_id=thread)
        if topic is not None:
            return await Conversation.get_or_none(id=topic.conversation_id), text
    replied = message.reply_to_message
    if replied is not None:
        link = await TgLink.get_or_none(
            tg_chat_id=message.chat.id, tg_message_id=replied.message_id
        )
        if link is not None:
            return await Conversation.get_or_none(id=link.conversation_id), text
    return None, text
