"""Linking an operator's Telegram account: they send the bot the code their page shows, in a
private chat (`/link 12345678`, or `/start 12345678` from the page's t.me link)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from app.audit.trail import Actor, Origin, record_after
from app.errors import Conflict
from app.i18n import using_locale
from app.telegram import texts

if TYPE_CHECKING:
    from app.admin.operators import Operators
    from app.telegram.bridge import TelegramBridge


async def on_link(
    message: Message, command: CommandObject, bridge: TelegramBridge, operators: Operators
) -> None:
    """`/link CODE` in a private chat: this Telegram user becomes that operator's account."""
    user = message.from_user
    if user is None or user.is_bot:
        return
    with using_locale(bridge.settings.default_locale):
        # Wrong codes are limited per Telegram user: a stranger cannot try codes at will.
        wait = await operators.link_tries.hit(str(user.id))
        if wait:
            await bridge.tell(message.chat.id, texts.link_too_many(max(1, int(wait // 60) + 1)))
            return
        try:
            operator = await operators.link_telegram(command.args or "", user.id)
        except Conflict as exc:
            await operators.link_tries.refund(str(user.id))
            await bridge.tell(message.chat.id, texts.link_taken(str(exc.params.get("name", ""))))
            return
        if operator is None:
            await bridge.tell(message.chat.id, texts.link_invalid())
            return
        await operators.link_tries.refund(str(user.id))
        await bridge.tell(message.chat.id, texts.telegram_linked(operator.name))
    context = {"telegram_user": user.full_name, "telegram_id": user.id}
    by = Origin(Actor(operator.id, operator.name), "telegram", context=context)
    await record_after("telegram_link", by=by, target=operator.name)


def router() -> Router:
    """Private chats only: a code sent in the admin group would be seen by everyone there."""
    linking = Router(name="linking")
    linking.message.filter(F.chat.type == "private")
    linking.message.register(on_link, Command("link"))
    # `/start CODE` (the t.me deep link); a bare /start stays the help (commands.py).
    linking.message.register(on_link, Command("start", magic=F.args))
    return linking
