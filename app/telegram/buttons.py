"""The buttons under the bot's notices: close a conversation, reopen it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiogram import F, Router
from aiogram.types import CallbackQuery

from app.audit.origin import telegram_origin
from app.i18n import error_text, using_locale
from app.models import Conversation
from app.telegram import texts

if TYPE_CHECKING:
    from app.telegram.bridge import TelegramBridge


async def on_close(query: CallbackQuery, bridge: TelegramBridge) -> None:
    """The "close conversation" / "reopen" button under a notice: the notice then says who."""
    message = query.message
    if message is None or not bridge.is_admin_chat(message.chat.id):
        await query.answer()
        return
    action, _, cid = (query.data or "").partition(":")
    conv = await Conversation.get_or_none(cid=cid)
    if conv is None:
        with using_locale(bridge.settings.default_locale):
            await query.answer(error_text("bad_chat", {}), show_alert=True)
        return
    closing = action == "close"
    by = await telegram_origin(bridge.settings, query.from_user.id, query.from_user.full_name)
    if closing:
        await bridge.chat.close_conversation(conv, by=by)
    else:
        await bridge.chat.reopen_conversation(conv, by=by)
    await bridge.notice_changed(
        conv, message.message_id, query.id, query.from_user.full_name, closing
    )
    with using_locale(bridge.settings.default_locale):
        toast = texts.closed(conv) if closing else texts.reopened(conv)
        await query.answer(toast.replace("<code>", "").replace("</code>", ""))


def router() -> Router:
    """The notice buttons, on a router of their own."""
    buttons = Router(name="buttons")
    buttons.callback_query.register(on_close, F.data.regexp(r"^(close|reopen):"))
    return buttons
