"""Who may act in the admin chat: the operator linked to the Telegram user who wrote.

Every update from the admin chat (a message, an edit, a button) passes here first. Its Telegram
user is looked up among the operators (`Operator.telegram_user_id`): an active operator's update
goes on, attributed to them (handlers take it as `author`); anyone else's is dropped, so a
stranger in the group (or a deactivated operator) never reaches a visitor, and the owner sees on
the audit page that someone tried (`telegram_stranger`, at most once an hour per Telegram user,
so a stranger cannot flood the trail).

The quick start keeps working with no extra step (README, "Telegram"): in a private admin chat
the owner is the chat's user from the start (app/admin/operators.py), and in a group, while the
owner is the only active operator and nobody has linked a Telegram account, every member of the
admin chat acts as the owner, as before there were operators. The first link, or a second
operator, ends that: from then on only linked operators are heard.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiogram import BaseMiddleware
from aiogram.types import CallbackQuery, Message, TelegramObject, User

from app.audit.origin import telegram_operator
from app.audit.trail import Actor, Origin, record_after
from app.chat.drafts import Author
from app.i18n import using_locale
from app.telegram import texts
from app.telegram.routing import topic_of

if TYPE_CHECKING:
    from app.admin.operators import Operators
    from app.telegram.bridge import TelegramBridge

log = logging.getLogger("sohbet.telegram.gate")

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


def _chat_and_user(event: TelegramObject) -> tuple[int | None, User | None]:
    if isinstance(event, Message):
        return event.chat.id, event.from_user
    if isinstance(event, CallbackQuery):
        message = event.message
        return (message.chat.id if message is not None else None), event.from_user
    return None, None


class OperatorGate(BaseMiddleware):
    """An outer middleware on the operator router: admin-chat updates from operators only."""

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        bridge: TelegramBridge = data["bridge"]
        chat_id, user = _chat_and_user(event)
        if chat_id is None or not bridge.is_admin_chat(chat_id):
            return await handler(event, data)  # private chats: linking, help
        if user is None or user.is_bot:
            return await handler(event, data)  # service messages: the handlers skip them
        operator = await telegram_operator(user.id)
        if operator is None:
            first = await _stranger(data.get("operators"), user)
            with using_locale(bridge.settings.default_locale):
                if isinstance(event, CallbackQuery):
                    await event.answer(texts.not_an_operator(), show_alert=True)
                elif first and isinstance(event, Message):
                    # Told once an hour (with the audit entry): an operator who has not linked
                    # their account learns why, a stranger cannot make the bot talk.
                    await bridge.say(
                        texts.not_an_operator(),
                        reply_to=event.message_id,
                        thread_id=topic_of(event),
                    )
            return None
        data["author"] = Author(operator.id, operator.name)
        return await handler(event, data)


async def _stranger(operators: Operators | None, user: User) -> bool:
    """Someone who is not an active operator wrote in the admin chat: recorded, at most once an
    hour per Telegram user; whether it was this time."""
    log.info("ignored an update from Telegram user %s: not an active operator", user.id)
    if operators is not None and await operators.stranger_records.hit(str(user.id)):
        return False
    context: dict[str, object] = {"telegram_user": user.full_name, "telegram_id": user.id}
    if user.username:
        context["telegram_username"] = user.username
    by = Origin(Actor(None, user.full_name[:64]), "telegram", context=context)
    await record_after("telegram_stranger", by=by, target=f"{user.full_name} ({user.id})")
    return True
