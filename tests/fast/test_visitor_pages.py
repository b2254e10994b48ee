"""The visitor's HTTP pages in-process: health, the start page and form, the language switch,
the installable app's manifest and service worker, and who may fetch a media file."""

from __future__ import annotations

import io
import re

from quart.typing import TestAppProtocol as App
from quart.typing import TestClientProtocol as Client
from werkzeug.datastructures import FileStorage

from tests.support.clients import VISITOR_COOKIE, client_id
from tests.support.inprocess import set_cookie, text_of
from tests.support.media_files import jpeg

ALERT = re.compile(r'<p class="alert" role="alert">(.*?)</p>', re.S)


async def start(client: Client, name: str) -> str:
    """Fill the start form; return the conversation id the chat page then shows."""
    r = await client.post("/start", form={"name": name})
    assert r.status_code == 303 and r.headers["Location"] == "/", await text_of(r)
    page = await text_of(await client.get("/"))
    found = re.search(r'id="conversation" data-chat-id="([^"]+)"', page)
    assert found, page
    return found.group(1)


async def test_health_and_readiness(client: Client) -> None:
    r = await client.get("/health")
    assert r.status_code == 200 and await r.get_json() == {"status": "ok"}
    r = await client.get("/health/ready")
    assert r.status_code == 200
    assert await r.get_json() == {"status": "ok", "database": "ok"}


async def test_start_page_asks_a_new_visitor_for_a_name(client: Client) -> None:
    r = await client.get("/")
    page = await text_of(r)
    assert r.status_code == 200
    assert '<html lang="tr">' in page
    assert 'action="/start" id="start-form"' in page
    assert re.search(r'<input[^>]*id="visitor-name"[^>]*name="name"[^>]*maxlength="40"', page)
    assert 'data-chat-id="' not in page


async def test_an_empty_name_is_refused_with_a_message(client: Client) -> None:
    r = await client.post("/start", form={"name": "  \u200b "})
    assert r.status_code == 400
    assert ALERT.findall(await text_of(r)) == ["Lütfen adınızı yazın."]
    assert "Set-Cookie" not in r.headers


async def test_start_remembers_the_device_and_opens_the_chat(app: App, client: Client) -> None:
    r = await client.post("/start", form={"name": "Eda"})
    assert r.status_code == 303 and r.headers["Location"] == "/"
    cookie = set_cookie(r, VISITOR_COOKIE)
    for attribute in ("HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=31536000"):
        assert attribute in cookie, cookie
    page = await text_of(await client.get("/"))
    cid = re.search(r'id="conversation" data-chat-id="(Eda-[0-9A-F]{4})"', page)
    assert cid, page
    assert 'id="start-form"' not in page
    # Another browser (no cookie) still gets the start page.
    other = app.test_client()
    assert 'id="start-form"' in await text_of(await other.get("/"))


async def test_language_switch_sets_a_cookie_and_goes_back(client: Client) -> None:
    r = await client.get("/lang/en?next=/admin")
    assert r.status_code == 303 and r.headers["Location"] == "/admin"
    assert "SameSite=Lax" in set_cookie(r, "sohbet_lang")
    page = await text_of(await client.get("/"))
    assert '<html lang="en">' in page and "Start chatting" in page
    r = await client.get("/lang/tr")
    assert r.status_code == 303 and r.headers["Location"] == "/"
    assert '<html lang="tr">' in await text_of(await client.get("/"))


async def test_language_switch_never_leaves_the_site(client: Client) -> None:
    for target in ("//evil.example/x", "https://evil.example/", "javascript:alert(1)"):
        r = await client.get("/lang/en", query_string={"next": target})
        assert r.status_code == 303 and r.headers["Location"] == "/", target


async def test_an_unknown_language_changes_nothing(client: Client) -> None:
    r = await client.get("/lang/xx")
    assert r.status_code == 303 and "Set-Cookie" not in r.headers
    assert '<html lang="tr">' in await text_of(await client.get("/"))


async def test_manifest_describes_an_installable_app(client: Client) -> None:
    r = await client.get("/manifest.webmanifest")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/manifest+json")
    assert r.headers["Cache-Control"] == "no-cache"
    manifest = await r.get_json()
    assert manifest["lang"] == "tr" and manifest["start_url"] == "/"
    assert manifest["display"] == "standalone"
    assert {(i["sizes"], i["purpose"]) for i in manifest["icons"]} == {
        ("192x192", "any"),
        ("192x192", "maskable"),
        ("512x512", "any"),
        ("512x512", "maskable"),
    }
    for icon in manifest["icons"]:
        image = await client.get(icon["src"])
        assert image.status_code == 200 and image.headers["Content-Type"] == "image/png", icon


async def test_service_worker_is_served_from_the_root_uncached(client: Client) -> None:
    r = await client.get("/sw.js")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/javascript")
    assert r.headers["Cache-Control"] == "no-cache"
    assert "addEventListener" in await text_of(r)


async def test_media_is_404_to_everyone_but_its_conversation(app: App, client: Client) -> None:
    cid = await start(client, "Foto")
    r = await client.post(
        "/media/upload",
        form={"chat_id": cid, "client_id": client_id(), "type": "photo"},
        files={"file": FileStorage(io.BytesIO(jpeg()), "photo.jpg", content_type="image/jpeg")},
    )
    assert r.status_code == 200, await text_of(r)
    body = await r.get_json()
    assert body["ok"] is True
    url = body["message"]["fileRef"]
    assert re.fullmatch(r"/media/[0-9a-f]{32}\.jpg", url), url

    r = await client.get(url)
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert (await r.get_data(as_text=False)).startswith(b"\xff\xd8")  # a JPEG

    stranger = app.test_client()
    await start(stranger, "Yabanci")
    nobody = app.test_client()
    for who in (stranger, nobody):
        r = await who.get(url)
        assert r.status_code == 404
    # Unknown but well-formed, malformed, and a path that climbs out: all the same 404.
    for path in ("/media/" + "0" * 32 + ".jpg", "/media/nope", "/media/..%2F..%2Fapp%2Fconfig.py"):
        r = await client.get(path)
        assert r.status_code == 404, path
