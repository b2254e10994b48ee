"""Calls: the `/call` Socket.IO namespace, call lifecycle and state, system messages, the
relay, ICE settings."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

import socketio
from quart import Quart

from app.admin.auth import AdminAuth
from app.calls.messages import call_label
from app.calls.namespace import CallNamespace
from app.calls.service import CallService
from app.chat.service import ChatService
from app.core.ratelimit import Limiter

if TYPE_CHECKING:
    from app.telegram.bridge import TelegramBridge


def init_app(
    app: Quart,
    chat: ChatService,
    sio: socketio.AsyncServer,
    auth: AdminAuth,
    bridge: TelegramBridge | None,
    limiter: Limiter,
) -> CallService:
    """Register `/call`, the template helper for call messages, and shutdown of calls."""
    notify = bridge.incoming_call if bridge is not None else None
    calls = CallService(chat.settings, chat, sio, notify)
    sio.register_namespace(CallNamespace(calls, auth, limiter))
    app.jinja_env.globals["call_label"] = call_label

    @app.while_serving
    async def call_media() -> AsyncGenerator[None, None]:
        await calls.start()
        yield
        await calls.close()

    return calls
