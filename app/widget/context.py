"""What the host page tells the widget's frame: the page the visitor is on, and who they are.

Both arrive from the frame (which checked the host's origin) with the visitor's token in a
header, so a request only ever changes the sender's own conversation.
"""

from __future__ import annotations

from typing import Any

from quart import request

from app.chat.rooms import ADMINS
from app.core.security import constant_time_equal, keyed_hash
from app.core.text import clean_name
from app.errors import Forbidden, InvalidInput, NotFound, SohbetError
from app.i18n import ERRORS, N_, error_text
from app.models import Conversation
from app.web import current_visitor, services
from app.widget.pages import host_page
from app.widget.views import bp

ERRORS.update(
    {
        "identity_off": N_("This site does not verify its customers' identity."),
        "identity_forged": N_("The identity could not be verified; nothing was changed."),
        "bad_page": N_("This page is not on the widget's allowed origins."),
    }
)


def _text(value: object, limit: int) -> str:
    return value.strip()[:limit] if isinstance(value, str) else ""


async def _conversation() -> Conversation:
    conv = await current_visitor()
    if conv is None:
        raise NotFound("bad_chat")
    return conv


async def _body() -> dict[str, Any]:
    data = await request.get_json(force=True, silent=True)
    if not isinstance(data, dict):
        raise InvalidInput("bad_payload")
    return data


def _answer(exc: SohbetError) -> tuple[dict[str, Any], int]:
    return {"ok": False, "error": exc.code, "message": error_text(exc.code, exc.params)}, exc.status


@bp.post("/widget/page")
async def page() -> tuple[dict[str, Any], int]:
    """Remember the host page the visitor is on and show it to the operators."""
    try:
        conv = await _conversation()
        data = await _body()
        origins = await services().widget_origins.current()
        page = host_page(data.get("url"), data.get("title"), origins)
        if page is None:
            raise InvalidInput("bad_page")
    except SohbetError as exc:
        return _answer(exc)
    conv.host_url, conv.host_title = page
    await conv.save(update_fields=["host_url", "host_title"])
    svc = services()
    # The line an open pane shows, rendered here so the panel swaps it in as it is.
    html = await svc.chat.fanout.renderer.render(
        "partials/widget/host_page.html", svc.settings.default_locale, conv=conv
    )
    payload = {"chat_id": conv.cid, "url": conv.host_url, "title": conv.host_title, "html": html}
    await svc.sio.emit("widget:page", payload, room=ADMINS, namespace="/chat")
    if svc.telegram is not None:
        await svc.telegram.page_changed(conv)
    return {"ok": True}, 200


@bp.post("/widget/identify")
async def identify() -> tuple[dict[str, Any], int]:
    """Take the host site's word for who the visitor is, if it signed the id with our secret."""
    svc = services()
    try:
        conv = await _conversation()
        data = await _body()
        secret = svc.settings.widget_identity_secret
        if not secret:
            raise Forbidden("identity_off")
        external_id = _text(data.get("id"), 128)
        signature = _text(data.get("hash"), 128).lower()
        if not external_id or not constant_time_equal(keyed_hash(secret, external_id), signature):
            raise Forbidden("identity_forged")
        name = clean_name(data.get("name"), svc.settings.max_name_chars)
    except SohbetError as exc:
        return _answer(exc)
    conv.visitor_name = name
    conv.external_id = external_id
    conv.visitor_email = _text(data.get("email"), 254)
    await conv.save(update_fields=["visitor_name", "external_id", "visitor_email"])
    await svc.chat.fanout.publish_row(conv)
    return {"ok": True, "name": name}, 200
