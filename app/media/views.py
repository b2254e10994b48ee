"""Upload a photo or an audio message; serve media only to the conversation's participants."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, request
from quart.datastructures import FileStorage
from werkzeug.exceptions import RequestEntityTooLarge

from app.admin.guard import check_csrf
from app.chat.drafts import Author
from app.chat.previews import audio_length_text
from app.errors import InvalidInput, NotFound, SohbetError
from app.i18n import error_text, gettext
from app.media.service import MediaService, size_text
from app.media.storage import valid_key
from app.models import Conversation, Message
from app.web import current_operator, current_visitor, services

bp = Blueprint("media", __name__)

UPLOAD_PATH = "/media/upload"
# Room for the multipart envelope and the small fields around the file.
ENVELOPE = 64 * 1024
# A served file never runs as a page, whatever is in it.
MEDIA_CSP = "default-src 'none'; sandbox"


def media() -> MediaService:
    return services().media


def _refusal(exc: SohbetError) -> tuple[dict[str, Any], int]:
    return {"ok": False, "error": exc.code, "message": error_text(exc.code, exc.params)}, exc.status


@bp.post(UPLOAD_PATH)
async def upload() -> tuple[dict[str, Any], int]:
    """Take one photo or audio file as a message of the visitor's (or, with `as=admin`, the
    operator's) conversation; answer like a socket `send`: `{ok, duplicate, message}`. With
    `hold=1` the checked file is only stored, and `{ok, fileRef}` is what a socket `send` then
    posts."""
    svc = media()
    limit = svc.settings.max_bytes
    try:
        if (request.content_length or 0) > limit + ENVELOPE:
            raise InvalidInput("media_too_large", limit=size_text(limit))
        try:
            form = await request.form
            files = await request.files
        except RequestEntityTooLarge:
            raise InvalidInput("media_too_large", limit=size_text(limit)) from None
        upload: FileStorage | None = files.get("file")
        if upload is None:
            raise InvalidInput("media_missing")
        role, conversation_id, author = await _uploader(form)
        data = upload.read()
        if form.get("hold") == "1":
            ref = await svc.hold(
                conversation_id,
                role=role,
                kind=str(form.get("type", "")),
                data=data,
                filename=upload.filename or "",
            )
            return {"ok": True, "fileRef": ref}, 200
        posted, lost_ms = await svc.post(
            conversation_id,
            role=role,
            kind=str(form.get("type", "")),
            data=data,
            client_id=form.get("client_id"),
            filename=upload.filename or "",
            caption=form.get("text", ""),
            source="panel" if role == "admin" else "web",
            author=author,
        )
    except SohbetError as exc:
        return _refusal(exc)
    chat = services().chat
    payload = await chat.fanout.payload_for(
        posted.conversation, posted.message, role, posted.rendered
    )
    answer: dict[str, Any] = {"ok": True, "duplicate": not posted.created, "message": payload}
    if lost_ms:
        # A recording with a damaged end: what decoded was kept, and the sender is told.
        answer["notice"] = gettext(
            "The end of the recording was damaged: %(kept)s was sent, %(lost)s could not be read.",
            kept=audio_length_text(posted.message.media_duration_ms),
            lost=audio_length_text(lost_ms),
        )
    return answer, 200


async def _uploader(form: Any) -> tuple[str, int, Author | None]:
    """Who uploads, into which conversation: from the cookies, never from the form's claim."""
    chat = services().chat
    if form.get("as") == "admin":
        session = await current_operator()
        if session is None:
            raise NotFound("bad_chat")
        check_csrf(session, form)
        author = Author(session.operator_id, session.operator.name)
        return "admin", await chat.queries.id_for_cid(form.get("chat_id")), author
    conv = await current_visitor()
    if conv is None or form.get("chat_id") != conv.cid:
        raise NotFound("bad_chat")
    return "visitor", conv.id, None


@bp.get("/media/<key>")
async def serve(key: str) -> Response:
    """A media file, to the visitor of its conversation or a signed-in operator; else 404."""
    if not valid_key(key):
        raise NotFound("not_found")
    message = await Message.get_or_none(media_key=key, deleted_at__isnull=True)
    if message is None or not await _may_see(message):
        raise NotFound("not_found")
    try:
        data = await media().read(key)
    except KeyError:
        raise NotFound("not_found") from None
    response = Response(data, status=200, content_type=message.media_type)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = MEDIA_CSP
    response.headers["Content-Disposition"] = "inline"
    response.headers["Cache-Control"] = "private, max-age=86400"
    response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
    response.set_etag(key)
    # Safari plays audio only from a server that answers byte ranges.
    return await response.make_conditional(request, accept_ranges=True, complete_length=len(data))


async def _may_see(message: Message) -> bool:
    if await current_operator() is not None:
        return await Conversation.exists(id=message.conversation_id)
    own = await current_visitor()
    return own is not None and own.id == message.conversation_id
