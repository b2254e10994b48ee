"""What the operator does in Telegram, composed in one place: each module has its own router.

Linking a Telegram account (private chats) comes first, then commands, before replies, so
"/help" is a command and not an answer to a visitor. Handlers get the bridge (and the team, as
"operators") by name from the dispatcher (`dispatcher["bridge"]`), not from a global.
"""

from __future__ import annotations

from aiogram import Router

from app.telegram import attachments, buttons, commands, linking, replies, saved
from app.telegram.gate import OperatorGate


def build_router() -> Router:
    """The operator's handlers, on one router for the bridge's dispatcher."""
    operator = Router(name="operator")
    # Admin-chat updates from active operators only, each attributed to its operator.
    gate = OperatorGate()
    operator.message.outer_middleware(gate)
    operator.edited_message.outer_middleware(gate)
    operator.callback_query.outer_middleware(gate)
    operator.include_routers(
        linking.router(),
        commands.router(),
        saved.router(),
        replies.router(),
        attachments.router(),
        buttons.router(),
    )
    return operator
