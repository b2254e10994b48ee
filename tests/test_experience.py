"""Issue 8 over HTTP and Socket.IO: compressed, cached static files; the PWA files; receipts
both ways; the operator's search, close/reopen and transcripts; moving a conversation to
another device with a one-time link."""

from __future__ import annotations

import gzip
import io
import re
from pathlib import Path

import aiohttp
import brotli
from pypdf import PdfReader

from tests.support.clients import (
    ADMIN_COOKIE,
    VISITOR_COOKIE,
    admin_csrf,
    admin_peer,
    chat_sockets,
    client_id,
    cookie_from,
    panel_action,
    start_visitor,
    visitor_peer,
)
from tests.support.media_files import jpeg, upload
from tests.support.server import ROOT, Server, execute_sql


def raw_session() -> aiohttp.ClientSession:
    """No cookie jar, no transparent gunzip: the test sees the bytes on the wire."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False)


async def visitor_page(server: Server, token: str) -> str:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.get(server.url + "/", headers={"Cookie": f"{VISITOR_COOKIE}={token}"}) as r:
            assert r.status == 200
            return await r.text()


# Compression and caching ---------------------------------------------------------------------


async def test_static_files_are_compressed_and_cached_for_a_year(server: Server) -> None:
    token, _ = await start_visitor(server.url, "Gzip")
    page = await visitor_page(server, token)
    css = re.search(r'href="(/static/css/app\.css\?v=[0-9a-f]+)"', page)
    assert css, page
    source = (ROOT / "static/css/app.css").read_bytes()
    async with raw_session() as http:
        async with http.get(server.url + css.group(1), headers={"Accept-Encoding": "gzip"}) as r:
            body = await r.read()
            assert r.status == 200
            assert r.headers["Content-Encoding"] == "gzip"
            assert "Accept-Encoding" in r.headers["Vary"]
            assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
            assert gzip.decompress(body) == source
            assert len(body) < len(source) / 2
            etag = r.headers["ETag"]
        # Revalidation still works on the compressed representation's (weak) tag.
        async with http.get(
            server.url + css.group(1),
            headers={"Accept-Encoding": "gzip", "If-None-Match": etag},
        ) as r:
            assert r.status == 304
        # A client that does not take gzip gets the file as it is.
        async with http.get(
            server.url + css.group(1), headers={"Accept-Encoding": "identity"}
        ) as r:
            assert "Content-Encoding" not in r.headers
            assert await r.read() == source
        # A browser (they all take Brotli) gets the smaller Brotli body; one that prefers gzip
        # by weight gets gzip.
        vendor = "/static/vendor/socket.io-4.8.4.min.js"
        original = (ROOT / "static" / vendor[8:]).read_bytes()
        browser = "gzip, deflate, br, zstd"
        async with http.get(server.url + vendor, headers={"Accept-Encoding": browser}) as r:
            assert r.headers["Content-Encoding"] == "br"
            assert "immutable" in r.headers["Cache-Control"]
            packed = await r.read()
            assert brotli.decompress(packed) == original
            assert len(packed) < 0.92 * len(gzip.compress(original, 9))
        async with http.get(
            server.url + vendor, headers={"Accept-Encoding": "br;q=0.5, gzip"}
        ) as r:
            assert r.headers["Content-Encoding"] == "gzip"
            assert gzip.decompress(await r.read()) == original
        # An unversioned URL must revalidate: it may change with the next release.
        async with http.get(server.url + "/static/css/app.css") as r:
            assert r.headers["Cache-Control"] == "no-cache"
        # Pages are compressed too, and never cached.
        async with http.get(
            server.url + "/",
            headers={"Accept-Encoding": "gzip", "Cookie": f"{VISITOR_COOKIE}={token}"},
        ) as r:
            assert r.headers["Content-Encoding"] == "gzip"
            assert r.headers["Cache-Control"] == "no-store"
            assert b'id="conversation"' in gzip.decompress(await r.read())
        async with http.get(
            server.url + "/",
            headers={"Accept-Encoding": "br", "Cookie": f"{VISITOR_COOKIE}={token}"},
        ) as r:
            assert r.headers["Content-Encoding"] == "br"
            assert b'id="conversation"' in brotli.decompress(await r.read())


async def test_visitor_first_load_leaves_htmx_out(server: Server) -> None:
    token, _ = await start_visitor(server.url, "Hafif")
    page = await visitor_page(server, token)
    scripts = re.findall(r'<script[^>]+src="([^"]+)"', page)
    assert not any("htmx" in s for s in scripts), scripts
    # It is still there for "load earlier messages", fetched on first use.
    assert 'data-htmx="/static/vendor/htmx-2.0.11.min.js"' in page


# PWA -----------------------------------------------------------------------------------------


async def test_manifest_and_service_worker(server: Server) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/manifest.webmanifest") as r:
            assert r.status == 200
            assert r.content_type == "application/manifest+json"
            manifest = await r.json(content_type=None)
        assert manifest["start_url"] == "/" and manifest["display"] == "standalone"
        assert manifest["name"] and manifest["short_name"]
        sizes = {(i["sizes"], i["purpose"]) for i in manifest["icons"]}
        assert {("192x192", "any"), ("512x512", "any"), ("512x512", "maskable")} <= sizes
        for icon in manifest["icons"]:
            async with http.get(server.url + icon["src"]) as r:
                assert r.status == 200 and r.content_type == "image/png"
                assert (await r.read()).startswith(b"\x89PNG")
        async with http.get(server.url + "/sw.js") as r:
            assert r.status == 200
            assert r.content_type == "text/javascript"
            assert r.headers["Cache-Control"] == "no-cache"
            assert 'addEventListener("fetch"' in await r.text()
    token, _ = await start_visitor(server.url, "Pwa")
    assert '<link rel="manifest" href="/manifest.webmanifest">' in await visitor_page(server, token)


# Receipts --------------------------------------------------------------------------------------


def receipt_of(html: str) -> str | None:
    found = re.search(r'data-receipt="(\w+)"', html)
    return found.group(1) if found else None


async def test_receipts_both_ways(server: Server, admin_token: str) -> None:
    async with chat_sockets(server.url, admin_token, "Makbuz") as (token, cid, visitor, admin):
        await visitor.call("join", {"chat_id": cid})
        await admin.call("join", {"chat_id": cid})
        ack = await visitor.call(
            "send", {"chat_id": cid, "text": "Merhaba", "client_id": client_id()}
        )
        seq = ack["message"]["seq"]
        assert receipt_of(ack["message"]["html"]) == "sent"
        # The operator's copy has no ticks: ticks are for the author.
        pushed = await admin.wait_for("chat:message", lambda m: m["seq"] == seq)
        assert receipt_of(pushed["html"]) is None

        assert (await admin.call("receipt", {"chat_id": cid, "delivered": seq}))["ok"]
        got = await visitor.wait_for(
            "chat:receipt", lambda r: r["reader"] == "admin" and r["delivered"] == seq
        )
        assert got == {"chat_id": cid, "reader": "admin", "delivered": seq, "seen": 0}
        assert (
            receipt_of((await visitor_page(server, token)).split('id="messages"')[1]) == "delivered"
        )

        await admin.call("receipt", {"chat_id": cid, "seen": seq})
        await visitor.wait_for(
            "chat:receipt", lambda r: r["reader"] == "admin" and r["seen"] == seq
        )
        assert receipt_of((await visitor_page(server, token)).split('id="messages"')[1]) == "seen"
        # Watermarks never move back, and never past the last message.
        await admin.call("receipt", {"chat_id": cid, "delivered": 0, "seen": 0})
        await admin.call("receipt", {"chat_id": cid, "seen": 10_000})
        assert receipt_of((await visitor_page(server, token)).split('id="messages"')[1]) == "seen"
        assert all(r["seen"] <= seq for r in visitor.events["chat:receipt"])

        # The other way: the operator writes, the visitor's page sees it.
        reply = await admin.call(
            "send", {"chat_id": cid, "text": "Buyrun", "client_id": client_id()}
        )
        reply_seq = reply["message"]["seq"]
        assert receipt_of(reply["message"]["html"]) == "sent"
        await visitor.call("receipt", {"chat_id": cid, "delivered": reply_seq, "seen": reply_seq})
        got = await admin.wait_for(
            "chat:receipt", lambda r: r["reader"] == "visitor" and r["seen"] == reply_seq
        )
        assert got["delivered"] == reply_seq

        # A reconnecting author is told where its ticks stand.
        again = await visitor_peer(server.url, token)
        try:
            await again.call("join", {"chat_id": cid, "last_seq": reply_seq})
            state = await again.wait_for("chat:receipt")
            assert state == {"chat_id": cid, "reader": "admin", "delivered": seq, "seen": seq}
        finally:
            await again.close()

        # A visitor cannot move someone else's receipts.
        _, other_cid = await start_visitor(server.url, "Başka")
        refused = await visitor.call("receipt", {"chat_id": other_cid, "seen": 1})
        assert refused["ok"] is False and refused["error"] == "bad_chat"
        bad = await visitor.call("receipt", {"chat_id": cid, "seen": "all"})
        assert bad["ok"] is False and bad["error"] == "bad_payload"


async def test_admin_seen_clears_unread(server: Server, admin_token: str) -> None:
    async with chat_sockets(server.url, admin_token, "Okunmamış") as (_, cid, visitor, admin):
        ack = await visitor.call(
            "send", {"chat_id": cid, "text": "Selam", "client_id": client_id()}
        )
        row = await admin.wait_for(
            "admin:conversation", lambda r: r["chat_id"] == cid and 'data-unread="1"' in r["html"]
        )
        assert row
        await admin.call("join", {"chat_id": cid})
        await admin.call("receipt", {"chat_id": cid, "seen": ack["message"]["seq"]})
        await admin.wait_for(
            "admin:conversation", lambda r: r["chat_id"] == cid and 'data-unread="0"' in r["html"]
        )


# Operator tools ------------------------------------------------------------------------------


async def test_search_close_reopen(server: Server, admin_token: str) -> None:
    csrf = await admin_csrf(server.url, admin_token)
    token, cid = await start_visitor(server.url, "Zeynep")
    _, other = await start_visitor(server.url, "Kemal")
    visitor = await visitor_peer(server.url, token)
    try:
        await visitor.call(
            "send",
            {
                "chat_id": cid,
                "text": "Fatura adresimi değiştirmek istiyorum",
                "client_id": client_id(),
            },
        )
    finally:
        await visitor.close()
    headers = {"Cookie": f"{ADMIN_COOKIE}={admin_token}", "HX-Request": "true"}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:

        async def search(q: str) -> str:
            async with http.get(
                server.url + "/admin/search", params={"q": q}, headers=headers
            ) as r:
                assert r.status == 200
                return await r.text()

        for query in ("FATURA", "zeynep", cid, "adresimi fatura"):
            found = await search(query)
            assert f'data-chat-id="{cid}"' in found, query
            assert f'data-chat-id="{other}"' not in found, query
        nothing = await search("kargo iade")
        assert "data-chat-id" not in nothing and "eşleşen konuşma yok" in nothing
        everything = await search("  ")
        assert f'data-chat-id="{cid}"' in everything and f'data-chat-id="{other}"' in everything

        async with http.post(server.url + f"/admin/c/{cid}/close", headers=headers) as r:
            assert r.status == 403  # no CSRF token
        async with http.post(
            server.url + f"/admin/c/{cid}/close", headers={**headers, "X-CSRF-Token": csrf}
        ) as r:
            pane = await r.text()
            assert r.status == 200 and "Yeniden aç" in pane and "/reopen" in pane
        async with http.get(server.url + "/admin/conversations", headers=headers) as r:
            row = re.search(
                rf'<li class="conv[^"]*" id="conv-\d+" data-chat-id="{cid}".*?</li>',
                await r.text(),
                re.S,
            )
            assert row and "Kapalı" in row.group(0)
        async with http.post(
            server.url + f"/admin/c/{cid}/reopen", headers={**headers, "X-CSRF-Token": csrf}
        ) as r:
            pane = await r.text()
            assert r.status == 200 and "/close" in pane
        async with http.get(server.url + "/admin/conversations", headers=headers) as r:
            row = re.search(
                rf'<li class="conv[^"]*" id="conv-\d+" data-chat-id="{cid}".*?</li>',
                await r.text(),
                re.S,
            )
            assert row and "Kapalı" not in row.group(0)
        # Not signed in: no list, whatever the query.
        async with http.get(server.url + "/admin/search", params={"q": "Zeynep"}) as r:
            assert "data-chat-id" not in await r.text()
            assert str(r.url).endswith("/admin")


async def test_transcripts_text_and_pdf(server: Server, admin_token: str) -> None:
    token, cid = await start_visitor(server.url, "Şükrü")
    visitor = await visitor_peer(server.url, token)
    admin = await admin_peer(server.url, admin_token)
    lines = ["Iğdır'a kargo ne zaman gelir?", "Çok teşekkürler (İyi günler) \\ 👋"]
    status, _ = await upload(
        server.url, chat_id=cid, client_id=client_id(), data=jpeg(), visitor_token=token,
        text="Kutunun fotoğrafı",
    )  # fmt: skip
    assert status == 200
    try:
        await visitor.call("send", {"chat_id": cid, "text": lines[0], "client_id": client_id()})
        await admin.call(
            "send", {"chat_id": cid, "text": "Yarın öğleden sonra.", "client_id": client_id()}
        )
        await visitor.call("send", {"chat_id": cid, "text": lines[1], "client_id": client_id()})
    finally:
        await visitor.close()
        await admin.close()
    cookie = {"Cookie": f"{ADMIN_COOKIE}={admin_token}"}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.get(server.url + f"/admin/c/{cid}/transcript.txt", headers=cookie) as r:
            assert r.status == 200 and r.content_type == "text/plain"
            assert "attachment" in r.headers["Content-Disposition"]
            text = await r.text()
        async with http.get(server.url + f"/admin/c/{cid}/transcript.pdf", headers=cookie) as r:
            assert r.status == 200 and r.content_type == "application/pdf"
            assert r.headers["Content-Disposition"].endswith('.pdf"')
            pdf = await r.read()
        async with http.get(server.url + f"/admin/c/{cid}/transcript.pdf") as r:
            assert b"%PDF" not in await r.read()  # not signed in: the login page
    assert f"Şükrü ile konuşma ({cid})" in text
    order = [text.index(lines[0]), text.index("Yarın öğleden sonra."), text.index(lines[1])]
    assert order == sorted(order)
    assert re.search(r"\[\d{4}-\d\d-\d\d \d\d:\d\d\] Şükrü: Iğdır'a", text)
    assert "Şükrü: [Fotoğraf] Kutunun fotoğrafı" in text

    reader = PdfReader(io.BytesIO(pdf))
    extracted = "\n".join(page.extract_text() for page in reader.pages)
    assert reader.metadata is not None and reader.metadata.title == f"Şükrü ile konuşma ({cid})"
    for needle in (
        "Iğdır'a kargo ne zaman gelir?",
        "Yarın öğleden sonra.",
        "Çok teşekkürler (İyi günler) \\",
    ):
        assert needle in extracted, extracted


async def test_long_transcript_pdf_paginates(server: Server, admin_token: str) -> None:
    token, cid = await start_visitor(server.url, "Uzun")
    visitor = await visitor_peer(server.url, token)
    try:
        for i in range(120):
            await visitor.call(
                "send",
                {"chat_id": cid, "text": f"satır {i} " + "ğüşıöç " * 30, "client_id": client_id()},
            )
    finally:
        await visitor.close()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.get(
            server.url + f"/admin/c/{cid}/transcript.pdf",
            headers={"Cookie": f"{ADMIN_COOKIE}={admin_token}"},
        ) as r:
            reader = PdfReader(io.BytesIO(await r.read()))
    assert len(reader.pages) > 3
    text = "".join(p.extract_text() for p in reader.pages)
    assert "satır 0 " in text and "satır 119 " in text
    assert f"{len(reader.pages)} / {len(reader.pages)}" in reader.pages[-1].extract_text()


# Continue on another device ------------------------------------------------------------------


async def test_handoff_moves_the_conversation_once(server: Server) -> None:
    token, cid = await start_visitor(server.url, "Taşınan")
    old_socket = await visitor_peer(server.url, token)
    await old_socket.call("join", {"chat_id": cid})
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.post(server.url + "/handoff") as r:
            assert r.status == 404  # no conversation on this device
        async with http.post(
            server.url + "/handoff",
            headers={"Cookie": f"{VISITOR_COOKIE}={token}", "HX-Request": "true"},
        ) as r:
            assert r.status == 200
            sheet = await r.text()
        link = re.search(r'value="(http://[^"]+/continue/([^"]+))"', sheet)
        assert link, sheet
        assert 'src="data:image/svg+xml' in sheet
        path = "/continue/" + link.group(2)

        # Opening the link (or a chat app's link preview fetching it) only asks.
        for _ in range(2):
            async with http.get(server.url + path, allow_redirects=False) as r:
                assert r.status == 200
                assert cookie_from(r, VISITOR_COOKIE) is None
                assert f'method="post" action="{path}"' in await r.text()
        async with http.post(server.url + path, allow_redirects=False) as r:
            assert r.status == 303
            new_token = cookie_from(r, VISITOR_COOKIE)
        assert new_token and new_token != token
        page = await visitor_page(server, new_token)
        assert f'data-chat-id="{cid}"' in page
        # The old device is told, and its cookie no longer opens the conversation.
        await old_socket.wait_for("chat:closed", lambda e: e["chat_id"] == cid)
        old_page = await visitor_page(server, token)
        assert 'id="start-form"' in old_page
        # A page of it that was away (asleep, offline) and comes back is told where it went.
        assert "Bu konuşma diğer cihazınızda devam ediyor." in old_page
        # Once only.
        for method in (http.get, http.post):
            async with method(server.url + path, allow_redirects=False) as r:
                assert r.status == 410
                assert "süresi dolmuş ya da zaten kullanılmış" in await r.text()
                assert cookie_from(r, VISITOR_COOKIE) is None

        # An expired link does not work either.
        async with http.post(
            server.url + "/handoff", headers={"Cookie": f"{VISITOR_COOKIE}={new_token}"}
        ) as r:
            fresh = re.search(r"/continue/([^\"]+)\"", await r.text())
        assert fresh
        await execute_sql(
            server, "UPDATE handoff SET expires_at = created_at WHERE used_at IS NULL"
        )
        for method in (http.get, http.post):
            async with method(
                server.url + "/continue/" + fresh.group(1), allow_redirects=False
            ) as r:
                assert r.status == 410
        async with http.get(server.url + "/continue/not-a-token", allow_redirects=False) as r:
            assert r.status == 410
    assert "data-chat-id" in await visitor_page(server, new_token)
    await old_socket.close()


def test_pdf_writer_is_valid_without_messages(tmp_path: Path) -> None:
    from app.admin.transcript import render_pdf

    pdf = render_pdf("Boş", "")
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == 1
    assert pdf.startswith(b"%PDF-1.4") and pdf.rstrip().endswith(b"%%EOF")


async def test_a_page_that_comes_back_after_its_conversation_was_deleted_is_told(
    server: Server, admin_token: str
) -> None:
    """The operator deleted the conversation while the visitor's page was away (asleep, offline,
    a closed tab): its next load says so once, and forgets the cookie."""
    token, cid = await start_visitor(server.url, "Silinen")
    status, _ = await panel_action(
        server.url, admin_token, await admin_csrf(server.url, admin_token), f"/admin/c/{cid}/delete"
    )
    assert status == 200
    notice = "Destek bu konuşmayı sonlandırdı ve sildi. Yeni bir konuşma başlatabilirsiniz."
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.get(
            server.url + "/", headers={"Cookie": f"{VISITOR_COOKIE}={token}"}
        ) as resp:
            page = await resp.text()
            dropped = [h for h in resp.headers.getall("Set-Cookie") if h.startswith(VISITOR_COOKIE)]
        assert 'id="start-form"' in page and notice in page
        assert len(dropped) == 1 and "Max-Age=0" in dropped[0], dropped
        # A token that never opened anything, and no cookie at all: a plain start page.
        for headers in ({"Cookie": f"{VISITOR_COOKIE}=never-issued"}, {}):
            async with http.get(server.url + "/", headers=headers) as resp:
                page = await resp.text()
            assert 'id="start-form"' in page and 'class="notice"' not in page
