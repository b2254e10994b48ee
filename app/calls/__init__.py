"""Calls: the `/call` Socket.IO namespace, call state, ICE settings, the Telegram ring."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from quart import Quart

from app.admin.auth import AdminAuth
from app.calls.namespace import CallNamespace
from app.calls.service import Call, CallService, call_label
from app.chat.service import ChatService
from app.i18n import using_locale
from app.models import Conversation
from app.telegram import texts
from app.telegram.bridge import TelegramBridge
from app.telegram.outbox import lane_of


def init_app(
    app: Quart, chat: ChatService, auth: AdminAuth, bridge: TelegramBridge | None
) -> CallService:
    """Register `/call`, the template helper for call messages, and shutdown of calls."""
    notify = None
    if bridge is not None:

        async def ring_telegram(conv: Conversation, call: Call) -> None:
            """The operator's Telegram gets "X is calling" through the outbox."""
            with using_locale(chat.settings.default_locale):
                text = texts.incoming_call(conv)
            await bridge.outbox.add(
                None,
                key=f"call:{call.id}",
                lane=lane_of(conv.id),
                text=text,
                conversation_id=conv.id,
            )

        notify = ring_telegram

    calls = CallService(chat.settings, chat, chat.sio, notify)
    chat.sio.register_namespace(CallNamespace(calls, auth))
    app.jinja_env.globals["call_label"] = call_label
    app.extensions["calls"] = calls

    @app.while_serving
    async def call_media() -> AsyncGenerator[None, None]:
        yield
        await calls.close()

    return calls
