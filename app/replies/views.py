"""The saved replies' pages under /admin: the management page (list, search, create, edit,
delete) and the composer's `/` picker. Writes go through `SavedReplies` alone."""

from __future__ import annotations

from quart import Blueprint, g, redirect, render_template, request
from werkzeug.wrappers.response import Response as WerkzeugResponse

from app.admin.guard import operator_required, owner_required, require_csrf
from app.audit.origin import request_origin
from app.errors import NotFound
from app.i18n import error_text
from app.i18n import gettext as _
from app.models import SavedReply
from app.replies.service import PLACEHOLDERS, SHORTCUT_MAX, ReplyError, ReplyInput, fill
from app.web import is_htmx, services

bp = Blueprint("replies", __name__)

# The composer's list shows this many; typing more narrows it.
PICKER_LIMIT = 30
Page = tuple[str, int] | WerkzeugResponse


def _form_context(
    reply: SavedReply | None = None,
    data: ReplyInput | None = None,
    error: ReplyError | None = None,
    saved: str = "",
) -> dict[str, object]:
    """What the form partial shows: the reply being edited (or none), the values, any error."""
    if data is None:
        data = ReplyInput(reply.shortcut, reply.text_tr, reply.text_en) if reply else ReplyInput()
    return {
        "reply": reply,
        "data": data,
        "error": error_text(error.code, error.params) if error else "",
        "error_field": error.field if error else "",
        "saved": saved,
        "shortcut_max": SHORTCUT_MAX,
        "placeholders": PLACEHOLDERS,
    }


async def _list_context(query: str = "") -> dict[str, object]:
    return {"replies": await services().replies.search(query), "query": query}


async def _page(status: int = 200, **form: object) -> tuple[str, int]:
    """The whole management page (without JavaScript, every form answer is this page)."""
    page = await render_template(
        "admin/replies.html",
        csrf_token=g.admin.csrf_token,
        form=form or _form_context(),
        **await _list_context(),
    )
    return page, status


async def _form_answer(status: int, form: dict[str, object], with_list: bool) -> Page:
    """An HTMX form answer: the form again, and after a change the list too (out of band)."""
    if not is_htmx():
        if status == 200:
            return redirect("/admin/replies", 303)
        return await _page(status, **form)
    body = await render_template("partials/replies/form.html", form=form)
    if with_list:
        body += await render_template(
            "partials/replies/list.html", oob=True, **await _list_context()
        )
    return body, status


async def _reply_input() -> ReplyInput:
    form = await request.form
    return ReplyInput(
        str(form.get("shortcut", ""))[:200],
        str(form.get("text_tr", ""))[:20_000],
        str(form.get("text_en", ""))[:20_000],
    )


@bp.get("/replies")
@owner_required
async def replies_page() -> tuple[str, int]:
    """The saved replies: search, the list with edit and delete, and the form for a new one."""
    return await _page()


@bp.get("/replies/list")
@owner_required
async def replies_list() -> str:
    """The list filtered by shortcut or text (the page's search box)."""
    query = (request.args.get("q") or "").strip()[:100]
    return await render_template("partials/replies/list.html", **await _list_context(query))


@bp.get("/replies/new")
@owner_required
async def new_form() -> str:
    """An empty form (the edit form's Cancel)."""
    return await render_template("partials/replies/form.html", form=_form_context())


@bp.get("/replies/<int:reply_id>/edit")
@owner_required
async def edit_form(reply_id: int) -> tuple[str, int]:
    """The form filled with one saved reply, to change it (gone meanwhile: an empty form that
    says so, and the list without it)."""
    try:
        reply = await services().replies.get(reply_id)
    except NotFound:
        gone = ReplyError("reply_not_found", "")
        page = await render_template("partials/replies/form.html", form=_form_context(error=gone))
        list_html = await render_template(
            "partials/replies/list.html", oob=True, **await _list_context()
        )
        return page + list_html, 404
    return await render_template("partials/replies/form.html", form=_form_context(reply)), 200


@bp.post("/replies")
@owner_required
async def create() -> Page:
    """Save a new reply; a refused one shows why beside the form and changes nothing."""
    await require_csrf()
    data = await _reply_input()
    try:
        reply = await services().replies.create(data, by=request_origin())
    except ReplyError as exc:
        return await _form_answer(400, _form_context(data=data, error=exc), with_list=False)
    saved = _("Saved /%(shortcut)s.", shortcut=reply.shortcut)
    return await _form_answer(200, _form_context(saved=saved), with_list=True)


@bp.post("/replies/<int:reply_id>")
@owner_required
async def update(reply_id: int) -> Page:
    """Save changes to a reply (checked as a new one is)."""
    await require_csrf()
    data = await _reply_input()
    replies = services().replies
    try:
        reply = await replies.update(reply_id, data, by=request_origin())
    except ReplyError as exc:
        current = await replies.get(reply_id)
        return await _form_answer(400, _form_context(current, data, exc), with_list=False)
    except NotFound:
        # Deleted meanwhile (by someone else): what was typed stays, to be added again.
        gone = ReplyError("reply_not_found", "")
        return await _form_answer(404, _form_context(data=data, error=gone), with_list=True)
    saved = _("Saved /%(shortcut)s.", shortcut=reply.shortcut)
    return await _form_answer(200, _form_context(saved=saved), with_list=True)


@bp.post("/replies/<int:reply_id>/delete")
@owner_required
async def delete(reply_id: int) -> Page:
    """Delete a reply (the page asked first); the list comes back without it."""
    await require_csrf()
    status = 200
    try:
        await services().replies.delete(reply_id, by=request_origin())
    except NotFound:
        status = 404  # deleted meanwhile: the list, as it is now, shows it gone
    if not is_htmx():
        return redirect("/admin/replies", 303)
    return await render_template("partials/replies/list.html", **await _list_context()), status


@bp.get("/replies/pick")
@operator_required
async def pick() -> str:
    """The composer's list for `/` + what was typed: each option carries the text to insert,
    in the conversation's language with its placeholders filled in."""
    conv = await services().chat.queries.by_cid(request.args.get("cid"))
    query = (request.args.get("q") or "").strip()[:100]
    found = await services().replies.search(query, limit=PICKER_LIMIT + 1)
    options = [(reply, fill(reply, conv)) for reply in found[:PICKER_LIMIT]]
    return await render_template(
        "partials/replies/options.html",
        options=options,
        more=len(found) > PICKER_LIMIT,
        query=query,
    )
