"""`POST /tg/webhook`: Telegram's pushes, accepted only with the secret token, stored before 200."""

from __future__ import annotations

from quart import Blueprint, request

from app.core.security import constant_time_equal
from app.web import services

bp = Blueprint("telegram", __name__)


@bp.post("/tg/webhook")
async def webhook() -> tuple[str, int]:
    """Store one update from Telegram; it is handled after the 200 goes back."""
    bridge = services().telegram
    if bridge is None or bridge.tg.mode != "webhook":
        return "", 404
    # The secret header is the protection: X-Forwarded-For and IP ranges can be forged.
    sent = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
    if not constant_time_equal(sent, bridge.tg.webhook_secret):
        return "unauthorized", 401
    payload = await request.get_json(force=True, silent=True)
    if not isinstance(payload, dict) or not isinstance(payload.get("update_id"), int):
        return "bad update", 400
    await bridge.inbox.store(payload)
    return "", 200
