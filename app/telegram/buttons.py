"""The buttons under the bot's notices: take a conversation, close it, reopen it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiogram import F, Router
from aiogram.types import CallbackQuery

from app.audit.origin import telegram_origin
from app.audit.trail import Actor, Origin
from app.errors import Conflict, InvalidInput
from app.i18n import ERRORS, N_, error_text, gettext, using_locale
from app.models import Conversation, Operator
from app.telegram import texts

if TYPE_CHECKING:
    from app.telegram.bridge import TelegramBridge

ERRORS.update(
    {
        "assign_not_operator": N_(
            "Only an active operator whose Telegram account is linked can take conversations."
        ),
    }
)


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


async def on_take(query: CallbackQuery, bridge: TelegramBridge) -> None:
    """ "Take it" under a notice: the conversation becomes the pressing Telegram user's
    operator's, unless someone was quicker; the answer says which."""
    message = query.message
    if message is None or not bridge.is_admin_chat(message.chat.id):
        await query.answer()
        return
    cid = (query.data or "").partition(":")[2]
    with using_locale(bridge.settings.default_locale):
        conv = await Conversation.get_or_none(cid=cid)
        if conv is None:
            await query.answer(error_text("bad_chat", {}), show_alert=True)
            return
        operator = await Operator.get_or_none(telegram_user_id=query.from_user.id, active=True)
        if operator is None:
            await query.answer(error_text("assign_not_operator", {}), show_alert=True)
            return
        context = (
            await telegram_origin(bridge.settings, query.from_user.id, query.from_user.full_name)
        ).context
        by = Origin(Actor(operator.id, operator.name), "telegram", context=context)
        try:
            await bridge.chat.assignment.take(conv, operator, by=by)
        except (Conflict, InvalidInput) as exc:
            await query.answer(error_text(exc.code, exc.params), show_alert=True)
            return
        await query.answer(
            gettext("You took the conversation with %(name)s.", name=conv.visitor_name)
        )


def router() -> Router:
    """The notice buttons, on a router of their own."""
    buttons = Router(name="buttons")
    buttons.callback_query.register(on_close, F.data.regexp(r"^(close|reopen):"))
    buttons.callback_query.register(on_take, F.data.regexp(r"^take:"))
    return buttons
