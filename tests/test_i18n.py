"""Turkish by default, English on request; every user-facing string has a Turkish translation."""

from __future__ import annotations

import aiohttp
from babel.messages.extract import extract_from_dir

from app.i18n import catalog, load_catalogs
from tests.support.clients import (
    VISITOR_COOKIE,
    client_id,
    jarless,
    start_visitor,
    visitor_peer,
)
from tests.support.server import ROOT, Server

METHOD_MAP = [
    ("app/**.py", "python"),
    ("templates/**.html", "jinja2"),
    ("partials/**.html", "jinja2"),
]
OPTIONS = {
    "templates/**.html": {"extensions": "jinja2.ext.i18n"},
    "partials/**.html": {"extensions": "jinja2.ext.i18n"},
}


def test_every_string_is_translated_to_turkish() -> None:
    load_catalogs(ROOT / "app" / "translations")
    tr = catalog("tr")
    found = {
        (msgid if isinstance(msgid, str) else msgid[0]): filename
        for filename, _, msgid, _, _ in extract_from_dir(
            str(ROOT),
            METHOD_MAP,
            OPTIONS,
            keywords={"_": None, "gettext": None, "N_": None, "ngettext": (1, 2)},
        )
    }
    assert len(found) > 50
    missing = {m: f for m, f in found.items() if m not in tr}
    assert not missing, f"untranslated: {missing}"


async def test_turkish_by_default_english_on_request(server: Server) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.get(server.url + "/") as r:
            page = await r.text()
        assert '<html lang="tr">' in page and "Sohbete başla" in page
        async with http.get(server.url + "/", headers={"Accept-Language": "en-US,en;q=0.9"}) as r:
            assert "Start chatting" in await r.text()
        async with http.get(server.url + "/lang/en?next=/admin", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/admin"
            lang = r.cookies["sohbet_lang"].value
        async with http.get(
            server.url + "/", headers={"Cookie": f"sohbet_lang={lang}", "Accept-Language": "tr"}
        ) as r:
            page = await r.text()
        assert '<html lang="en">' in page and "Start chatting" in page
        async with http.get(
            server.url + "/lang/en?next=//evil.example", allow_redirects=False
        ) as r:
            assert r.headers["Location"] == "/", "no open redirect"


async def test_errors_are_translated(server: Server) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.post(server.url + "/start", data={"name": "   "}) as r:
            assert r.status == 400
            assert "Lütfen adınızı yazın" in await r.text()
        async with http.post(
            server.url + "/start", data={"name": "x" * 41}, headers={"Cookie": "sohbet_lang=en"}
        ) as r:
            assert r.status == 400
            page = await r.text()
            assert "The name is too long (at most 40 characters)" in page
            assert 'value="' + "x" * 41 + '"' in page, "what the visitor typed is kept"


async def test_a_message_receipt_is_in_its_visitors_language(server: Server) -> None:
    """The receipt ticks are rendered once per language (app/render.py `fixed`): each visitor's
    copy of their own message still carries their own language's labels."""
    labels = {"tr": ("Gönderildi", "Görüldü"), "en": ("Sent", "Seen")}
    for lang in ("en", "tr", "en"):
        token, cid = await start_visitor(server.url, "Eda")
        async with jarless() as http:
            # The page the visitor opens sets the conversation's language.
            cookie = f"sohbet_lang={lang}; {VISITOR_COOKIE}={token}"
            async with http.get(server.url + "/", headers={"Cookie": cookie}) as r:
                assert f'<html lang="{lang}">' in await r.text()
        peer = await visitor_peer(server.url, token)
        try:
            joined = await peer.call("join", {"chat_id": cid})
            assert joined["ok"], joined
            ack = await peer.call(
                "send", {"chat_id": cid, "text": "merhaba", "client_id": client_id()}
            )
            html = ack["message"]["html"]
            other = labels["tr" if lang == "en" else "en"]
            assert all(f">{label}<" in html for label in labels[lang]), html
            assert not any(f">{label}<" in html for label in other), html
        finally:
            await peer.close()
