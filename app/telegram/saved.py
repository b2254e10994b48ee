"""Saved replies from Telegram: `/r kargo` in a conversation's topic (or as a reply, or with its
CID) sends that reply, filled in, as the operator's message; `/r` alone shows them as buttons."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from app.chat.drafts import Author
from app.errors import SohbetError
from app.i18n import error_text, using_locale
from app.models import Conversation
from app.models import Message as ChatMessage
from app.replies.service import SavedReplies, fill, search, text_for
from app.telegram import texts
from app.telegram.routing import client_id_for, conversation_for, topic_of

if TYPE_CHECKING:
    from app.telegram.bridge import TelegramBridge

# Telegram takes up to 100 buttons; a list longer than this is narrowed with "/r word".
PICKER_BUTTONS = 40
PICK_PREFIX = "sr"


async def on_saved_reply(
    message: Message,
    command: CommandObject,
    bridge: TelegramBridge,
    saved_replies: SavedReplies,
    author: Author | None = None,
) -> None:
    """/r kargo: send the saved reply to the conversation; /r alone: its buttons to choose."""
    if not bridge.is_admin_chat(message.chat.id) or message.from_user is None:
        return
    thread = topic_of(message)
    conv, shortcut = await conversation_for(message, (command.args or "").strip())
    with using_locale(bridge.settings.default_locale):
        if conv is None:
            await bridge.say(
                texts.which_conversation(), reply_to=message.message_id, thread_id=thread
            )
            return
        shortcut = shortcut.strip()
        if not shortcut:
            if not await search(limit=1):
                await bridge.say(texts.saved_none(), reply_to=message.message_id, thread_id=thread)
                return
            await _show_picker(bridge, conv, message.message_id, "")
            return
        reply = await saved_replies.by_shortcut(shortcut)
        if reply is None:
            if await search(shortcut, limit=1):
                await _show_picker(bridge, conv, message.message_id, shortcut)
            else:
                await bridge.say(
                    texts.saved_unknown(shortcut), reply_to=message.message_id, thread_id=thread
                )
            return
        text = fill(reply, conv)
        try:
            await bridge.chat.post_message(
                conv.id,
                role="admin",
                text=text,
                client_id=client_id_for(message),
                source="telegram",
                author=author,
            )
        except SohbetError as exc:
            await bridge.say(
                error_text(exc.code, exc.params), reply_to=message.message_id, thread_id=thread
            )
            return
        await bridge.say(
            texts.saved_sent(reply.shortcut, conv, text),
            reply_to=message.message_id,
            thread_id=thread,
        )


async def _show_picker(
    bridge: TelegramBridge, conv: Conversation, reply_to: int, query: str
) -> None:
    """The buttons go out through the outbox, in the conversation's topic, rendered when sent."""
    await bridge.outbox.add(
        None,
        key=f"replies:{secrets.token_hex(8)}",
        kind="replies",
        text=query,
        conversation_id=conv.id,
        reply_to=reply_to,
    )


async def picker(conv: Conversation, query: str) -> tuple[str, InlineKeyboardMarkup | None]:
    """The button list of saved replies for a conversation (all, or those matching `query`)."""
    found = await search(query)
    if not found:
        return texts.saved_none(), None
    rows = [
        [
            InlineKeyboardButton(
                text=_button_text(reply.shortcut, text_for(reply, conv.locale)),
                callback_data=f"{PICK_PREFIX}:{conv.id}:{reply.id}",
            )
        ]
        for reply in found[:PICKER_BUTTONS]
    ]
    heading = texts.saved_suggest(query, conv) if query else texts.saved_choose(conv)
    if len(found) > PICKER_BUTTONS:
        heading += "\n" + texts.saved_more(PICKER_BUTTONS, len(found))
    return heading, InlineKeyboardMarkup(inline_keyboard=rows)


def _button_text(shortcut: str, text: str) -> str:
    preview = " ".join(text.split())
    if len(preview) > 36:
        preview = preview[:35] + "…"
    return f"/{shortcut} · {preview}"


async def on_pick(
    query: CallbackQuery,
    bridge: TelegramBridge,
    saved_replies: SavedReplies,
    author: Author | None = None,
) -> None:
    """A button of the list: that reply goes to the conversation once, however often it is
    pressed (its message id is the send's idempotency key), and the list then says so."""
    message = query.message
    with using_locale(bridge.settings.default_locale):
        if message is None or not bridge.is_admin_chat(message.chat.id):
            await query.answer()
            return
        try:
            _, conv_id, reply_id = (query.data or "").split(":")
            conv = await Conversation.get_or_none(id=int(conv_id))
            if conv is None:
                raise SohbetError("bad_chat")
            reply = await saved_replies.get(int(reply_id))
            text = fill(reply, conv)
            client_id = f"tg-{message.chat.id}-{message.message_id}"
            # A second press is answered here: a repeated send would be stored once but pushed
            # to the visitor's sockets again (the writer re-publishes retries).
            if await ChatMessage.exists(conversation_id=conv.id, client_id=client_id):
                await query.answer(texts.saved_already())
                return
            posted = await bridge.chat.post_message(
                conv.id,
                role="admin",
                text=text,
                client_id=client_id,
                source="telegram",
                author=author,
            )
        except ValueError:
            await query.answer(error_text("bad_payload", {}), show_alert=True)
            return
        except SohbetError as exc:
            await query.answer(error_text(exc.code, exc.params), show_alert=True)
            return
        if not posted.created:
            await query.answer(texts.saved_already())
            return
        await bridge.outbox.add(
            None,
            key=f"picked:{message.chat.id}:{message.message_id}",
            kind="picked",
            text=texts.saved_sent(reply.shortcut, conv, text),
            conversation_id=conv.id,
            reply_to=message.message_id,
        )
        await query.answer(texts.plain(texts.saved_sent_toast(reply.shortcut, conv)))


def router() -> Router:
    """`/r` and its buttons, on a router of their own."""
    saved = Router(name="saved_replies")
    saved.message.register(on_saved_reply, Command("r", ignore_case=True))
    saved.callback_query.register(on_pick, F.data.startswith(f"{PICK_PREFIX}:"))
    return saved
