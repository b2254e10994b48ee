"""The operator's commands in Telegram: /help, /list, /ban and /unban."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from app.audit.origin import telegram_origin
from app.i18n import using_locale
from app.telegram import texts
from app.telegram.routing import conversation_for, conversation_named, topic_of

if TYPE_CHECKING:
    from app.telegram.bridge import TelegramBridge


async def on_help(message: Message, bridge: TelegramBridge) -> None:
    """/help: how to answer from Telegram."""
    if bridge.is_admin_chat(message.chat.id):
        await bridge.say(texts.help_text(), thread_id=topic_of(message))


async def on_list(message: Message, bridge: TelegramBridge) -> None:
    """/list: open conversations with their unread counts."""
    if bridge.is_admin_chat(message.chat.id):
        convs = await bridge.chat.queries.open_conversations()
        await bridge.say(texts.conversation_list(convs), thread_id=topic_of(message))


async def on_ban(message: Message, command: CommandObject, bridge: TelegramBridge) -> None:
    """/ban and /unban: as a reply, in the conversation's topic, or with its CID."""
    if not bridge.is_admin_chat(message.chat.id):
        return
    named = (command.args or "").strip()
    conv = await conversation_named(named[:64]) if named else None
    if conv is None:
        conv, _ = await conversation_for(message, named)
    if conv is None:
        await bridge.say(
            texts.which_conversation(), reply_to=message.message_id, thread_id=topic_of(message)
        )
        return
    now_blocked = command.command == "ban"
    user = message.from_user
    by = await telegram_origin(
        bridge.settings, user.id if user else None, user.full_name if user else ""
    )
    await bridge.chat.set_blocked(conv, now_blocked, by=by)
    with using_locale(bridge.settings.default_locale):
        await bridge.say(
            texts.blocked(conv, now_blocked),
            reply_to=message.message_id,
            thread_id=topic_of(message),
        )


def router() -> Router:
    """The commands, on a router of their own (a router joins one dispatcher)."""
    commands = Router(name="commands")
    commands.message.register(on_help, Command("help", "start"))
    commands.message.register(on_list, Command("list"))
    commands.message.register(on_ban, Command("ban", "unban"))
    return commands
