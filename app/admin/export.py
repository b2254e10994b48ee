"""The transcript downloads: one conversation as a text file or a PDF."""

from __future__ import annotations

from quart import Blueprint, Response

from app.admin.guard import operator_required
from app.admin.transcript import Line, render_pdf, render_text
from app.i18n import gettext as _
from app.models import Conversation, Message
from app.timefmt import local_stamp, utcnow
from app.web import services

bp = Blueprint("export", __name__)

TRANSCRIPT_LIMIT = 20_000


async def _transcript(cid: str) -> tuple[Conversation, str, str]:
    svc = services()
    settings = svc.settings
    conv = await svc.chat.queries.by_cid(cid)
    messages = (
        await Message.filter(conversation_id=conv.id, deleted_at__isnull=True)
        .order_by("seq")
        .limit(TRANSCRIPT_LIMIT)
    )
    authors = {"visitor": conv.visitor_name, "admin": settings.operator_name, "system": "—"}
    title = _("Conversation with %(name)s (%(cid)s)", name=conv.visitor_name, cid=conv.cid)
    header = [
        _("Started: %(when)s", when=local_stamp(conv.created_at, settings.zone)),
        _("Exported: %(when)s", when=local_stamp(utcnow(), settings.zone)),
        _("Times are in %(zone)s.", zone=str(settings.zone)),
    ]
    # An operator message is signed by its author (older ones, before attribution: the business).
    lines = [
        Line(m.created_at, m.author_name or authors.get(m.role, m.role), _transcript_body(m))
        for m in messages
    ]
    return conv, title, render_text(title, header, lines, settings.zone)


def _transcript_body(message: Message) -> str:
    """A message's text, with what it carried named in brackets (a photo, a voice message...)."""
    if not message.media_key:
        return message.text
    labels = {"photo": _("Photo"), "voice": _("Voice message")}
    label = labels.get(message.kind) or message.media_name or _("Audio")
    return f"[{label}] {message.text}".rstrip()


def _download(conv: Conversation, body: str | bytes, ext: str, mimetype: str) -> Response:
    """A transcript as a file to save, named after the conversation, never cached."""
    safe = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_") else "_" for ch in conv.cid)
    return Response(
        body,
        mimetype=mimetype,
        headers={
            "Content-Disposition": f'attachment; filename="sohbet-{safe}.{ext}"',
            "Cache-Control": "no-store",
        },
    )


@bp.get("/c/<cid>/transcript.txt")
@operator_required
async def transcript_text(cid: str) -> Response:
    """The whole conversation as a UTF-8 text file."""
    conv, _title, text = await _transcript(cid)
    return _download(conv, text, "txt", "text/plain")


@bp.get("/c/<cid>/transcript.pdf")
@operator_required
async def transcript_pdf(cid: str) -> Response:
    """The whole conversation as a PDF."""
    conv, title, text = await _transcript(cid)
    return _download(conv, render_pdf(title, text), "pdf", "application/pdf")
