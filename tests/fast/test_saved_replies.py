"""Saved replies through the panel's pages in-process: create, list, search, edit, delete, and
every kind of bad input refused with a clear message that changes nothing; the composer's list
in the conversation's language with its placeholders filled."""

from __future__ import annotations

import html
import re

from quart.typing import TestAppProtocol as App
from quart.typing import TestClientProtocol as Client

from app.models import SavedReply
from tests.support.inprocess import text_of

ALERT = re.compile(r'<p class="alert" role="alert" id="reply-form-error">(.*?)</p>', re.S)
HTMX = {"HX-Request": "true"}


async def csrf_of(operator: Client) -> dict[str, str]:
    page = await text_of(await operator.get("/admin/replies"))
    token = re.search(r'"X-CSRF-Token": "([^"]+)"', page)
    assert token, page
    return {**HTMX, "X-CSRF-Token": token.group(1)}


async def post(operator: Client, path: str, **form: str) -> tuple[int, str]:
    r = await operator.post(path, form=form, headers=await csrf_of(operator))
    return r.status_code, await text_of(r)


def alert(body: str) -> str:
    found = ALERT.findall(body)
    assert len(found) == 1, body
    return html.unescape(found[0])


async def rows(shortcut: str) -> list[SavedReply]:
    return await SavedReply.filter(shortcut_key=shortcut.casefold())


async def test_create_then_listed_and_searchable(operator: Client) -> None:
    status, body = await post(
        operator,
        "/admin/replies",
        shortcut="/kargo",
        text_tr="Merhaba {name}, kargonuz yola çıktı.",
        text_en="Hi {name}, your parcel is on its way.",
    )
    assert status == 200, body
    assert "/kargo kaydedildi." in html.unescape(body)
    # The list comes along out of band, with the new row.
    assert 'id="reply-list" hx-swap-oob="true"' in body and "/kargo</code>" in body
    [stored] = await rows("kargo")
    assert stored.shortcut == "kargo", "a leading / is not part of the shortcut"
    assert stored.text_en == "Hi {name}, your parcel is on its way."

    page = await text_of(await operator.get("/admin/replies"))
    assert "/kargo</code>" in page and "kargonuz yola çıktı" in page
    found = await text_of(await operator.get("/admin/replies/list?q=PARCEL", headers=HTMX))
    assert "/kargo</code>" in found
    missing = await text_of(await operator.get("/admin/replies/list?q=zzzz", headers=HTMX))
    assert "/kargo</code>" not in missing and "zzzz" in missing


async def test_turkish_capitals_find_and_collide(operator: Client) -> None:
    status, body = await post(operator, "/admin/replies", shortcut="iade", text_tr="İade süreci")
    assert status == 200, body
    found = await text_of(
        await operator.get("/admin/replies/list", query_string={"q": "İADE"}, headers=HTMX)
    )
    assert "/iade</code>" in found
    # "İADE" and "IADE" are the same shortcut as "iade": refused, nothing stored.
    for same in ("İADE", "IADE", "Iade"):
        status, body = await post(operator, "/admin/replies", shortcut=same, text_tr="başka")
        assert status == 400
        assert alert(body) == f"/{same} kısayoluyla kayıtlı bir yanıt zaten var."
        assert 'aria-invalid="true"' in body and f'value="{same}"' in body, "kept as typed"
    assert [r.text_tr for r in await SavedReply.filter(shortcut_key="iade")] == ["İade süreci"]


async def test_bad_input_is_refused_with_a_clear_message_and_changes_nothing(
    operator: Client,
) -> None:
    before = await SavedReply.all().count()
    # The chat's message limit, as the form's text boxes carry it.
    page = await text_of(await operator.get("/admin/replies"))
    found = re.search(r'<textarea[^>]*name="text_tr"[^>]*maxlength="(\d+)"', page)
    assert found, page
    limit = int(found.group(1))
    cases = [
        ({"shortcut": "", "text_tr": "x"}, "Bir kısayol yazın, örneğin kargo."),
        ({"shortcut": "  /  ", "text_tr": "x"}, "Bir kısayol yazın, örneğin kargo."),
        (
            {"shortcut": "iki kelime", "text_tr": "x"},
            "Kısayol tek kelimedir: yalnızca harf, rakam, - ve _ (boşluk ya da başka işaret yok).",
        ),
        (
            {"shortcut": "a.b", "text_tr": "x"},
            "Kısayol tek kelimedir: yalnızca harf, rakam, - ve _ (boşluk ya da başka işaret yok).",
        ),
        ({"shortcut": "k" * 33, "text_tr": "x"}, "Kısayol çok uzun (en fazla 32 karakter)."),
        (
            {"shortcut": "bos", "text_tr": "  ", "text_en": "\u200b"},
            "Yanıtı Türkçe, İngilizce ya da ikisiyle birden yazın.",
        ),
        (
            {"shortcut": "uzun", "text_en": "x" * (limit + 1)},
            f"Yanıt çok uzun (en fazla {limit} karakter).",
        ),
        (
            {"shortcut": "yer", "text_tr": "Merhaba {isim}"},
            "{isim} bir yer tutucu değil. Ziyaretçinin adı için {name}, sohbetin kimliği için "
            "{cid} kullanın.",
        ),
    ]
    for form, message in cases:
        status, body = await post(operator, "/admin/replies", **form)
        assert status == 400, (form, body)
        assert alert(body) == message, form
        assert "hx-swap-oob" not in body, "the list does not change"
    assert await SavedReply.all().count() == before
    # Without the CSRF token nothing is stored either.
    r = await operator.post("/admin/replies", form={"shortcut": "csrf", "text_tr": "x"})
    assert r.status_code == 403
    assert not await rows("csrf")


async def test_edit_and_delete(operator: Client) -> None:
    await post(operator, "/admin/replies", shortcut="saat", text_tr="09-18 arası açığız.")
    await post(operator, "/admin/replies", shortcut="adres", text_tr="Kadıköy")
    [reply] = await rows("saat")
    form = await text_of(await operator.get(f"/admin/replies/{reply.id}/edit", headers=HTMX))
    assert "/saat düzenle" in html.unescape(form).casefold() and "09-18 arası açığız." in form

    status, body = await post(
        operator,
        f"/admin/replies/{reply.id}",
        shortcut="Saatler",
        text_tr="09-18 arası açığız.",
        text_en="We are open 9 to 6.",
    )
    assert status == 200, body
    [changed] = await rows("saatler")
    assert (changed.id, changed.text_en) == (reply.id, "We are open 9 to 6.")
    assert changed.updated_at >= changed.created_at

    # Renaming to a shortcut another reply has: refused, both unchanged.
    status, body = await post(operator, f"/admin/replies/{reply.id}", shortcut="ADRES", text_tr="x")
    assert status == 400 and alert(body) == "/ADRES kısayoluyla kayıtlı bir yanıt zaten var."
    assert [(r.shortcut, r.text_tr) for r in await rows("saatler")] == [
        ("Saatler", "09-18 arası açığız.")
    ]
    assert [r.text_tr for r in await rows("adres")] == ["Kadıköy"]

    status, body = await post(operator, f"/admin/replies/{reply.id}/delete")
    assert status == 200 and "/Saatler</code>" not in body and "/adres</code>" in body
    assert not await rows("saatler")
    # Gone (deleted in another tab): a second delete shows the list as it is; opening it to
    # edit, or saving the old form, says so and keeps what was typed.
    status, body = await post(operator, f"/admin/replies/{reply.id}/delete")
    assert status == 404 and "/Saatler</code>" not in body and "/adres</code>" in body
    r = await operator.get(f"/admin/replies/{reply.id}/edit", headers=HTMX)
    assert r.status_code == 404 and alert(await text_of(r)) == "Bu kayıtlı yanıt artık yok."
    status, body = await post(operator, f"/admin/replies/{reply.id}", shortcut="saat", text_tr="x")
    assert status == 404 and alert(body) == "Bu kayıtlı yanıt artık yok."
    assert 'value="saat"' in body and 'id="reply-form"' in body
    assert not await rows("saat")


async def test_only_a_signed_in_operator(client: Client) -> None:
    r = await client.get("/admin/replies")
    assert r.status_code == 303 and r.headers["Location"] == "/admin"
    r = await client.post("/admin/replies", form={"shortcut": "x", "text_tr": "y"}, headers=HTMX)
    assert r.status_code in (401, 403)
    assert not await rows("x")
    r = await client.get("/admin/replies/pick?cid=x&q=", headers=HTMX)
    assert r.status_code == 401


async def start_chat(app: App, name: str, language: str) -> str:
    visitor = app.test_client()
    r = await visitor.post("/start", form={"name": name}, headers={"Accept-Language": language})
    assert r.status_code == 303
    page = await text_of(await visitor.get("/", headers={"Accept-Language": language}))
    cid = re.search(r'data-chat-id="([^"]+)"', page)
    assert cid, page
    return cid.group(1)


def options(body: str) -> dict[str, str]:
    found = re.findall(r'role="option"[^>]*data-text="([^"]*)"[^>]*>\s*<span[^>]*>/([^<]+)<', body)
    return {shortcut: html.unescape(text) for text, shortcut in found}


async def test_the_composer_list_fills_the_conversation_language(
    operator: Client, app: App
) -> None:
    await post(
        operator,
        "/admin/replies",
        shortcut="hosgeldin",
        text_tr="Hoş geldiniz {name}! Sohbet no: {cid}",
        text_en="Welcome {name}! Chat id: {cid}",
    )
    await post(operator, "/admin/replies", shortcut="hosca", text_tr="Hoşça kalın {name}.")
    english = await start_chat(app, "Ada", "en")
    turkish = await start_chat(app, "Eda", "tr")

    body = await text_of(
        await operator.get(f"/admin/replies/pick?cid={english}&q=hos", headers=HTMX)
    )
    assert options(body) == {
        "hosca": "Hoşça kalın Ada.",  # no English text: the Turkish one
        "hosgeldin": f"Welcome Ada! Chat id: {english}",
    }
    body = await text_of(
        await operator.get(f"/admin/replies/pick?cid={turkish}&q=HOSG", headers=HTMX)
    )
    assert options(body) == {"hosgeldin": f"Hoş geldiniz Eda! Sohbet no: {turkish}"}
    body = await text_of(
        await operator.get(f"/admin/replies/pick?cid={turkish}&q=qqq", headers=HTMX)
    )
    assert options(body) == {} and "qqq" in body and 'role="listbox"' not in body
    r = await operator.get("/admin/replies/pick?cid=Yok-0000&q=", headers=HTMX)
    assert r.status_code == 404

    # Markup in a reply or in a visitor's name stays text, in the list and on the page.
    await post(operator, "/admin/replies", shortcut="isaret", text_tr='<b onclick="x()">{name}</b>')
    cid = await start_chat(app, '<img src=x onerror="alert(1)">', "tr")
    r = await operator.get("/admin/replies/pick", query_string={"cid": cid, "q": "isaret"})
    body = await text_of(r)
    assert "<img" not in body and "<b " not in body
    assert options(body) == {"isaret": '<b onclick="x()"><img src=x onerror="alert(1)"></b>'}
    page = await text_of(await operator.get("/admin/replies"))
    assert "<b onclick" not in page and "&lt;b onclick=" in page
