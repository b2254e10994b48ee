"""The widget's token without any cookie (as Safari's and Firefox's partitioned storage keep it)
through real HTTP and Socket.IO clients, and the host page in Telegram's "entered" notice.
"""

from __future__ import annotations

import re

import socketio

from tests.support.clients import ADMIN_COOKIE, client_id, jarless
from tests.support.fake_telegram import FakeTelegram
from tests.support.server import Server, query
from tests.support.telegram import with_text

HOST = "http://localhost:8123"
TELEGRAM_ENV = {"WIDGET_ORIGINS": HOST}
HEADER = "X-Sohbet-Visitor"


async def widget_start(server: Server, name: str, url: str, title: str) -> tuple[str, str]:
    """Open a conversation from the widget's frame, as its form posts; (token, CID)."""
    async with jarless() as http:
        form = {"name": name, "origin": HOST, "host_url": url, "host_title": title}
        async with http.post(server.url + "/widget/start", data=form) as resp:
            assert resp.status == 200, await resp.text()
            assert "Partitioned" in resp.headers["Set-Cookie"]
            page = await resp.text()
    token = re.search(r'data-token="([^"]+)"', page)
    cid = re.search(r'data-chat-id="([^"]+)"', page)
    assert token and cid, page
    return token.group(1), cid.group(1)


async def test_the_entered_notice_names_the_host_page(
    tg_server: Server, fake: FakeTelegram
) -> None:
    _, cid = await widget_start(tg_server, "Deniz", f"{HOST}/fiyatlar", "Fiyatlar & Paketler")
    notice = await fake.wait_for_sent(with_text(f"[CID: {cid}]"))
    text = notice.text or ""
    assert "<b>Deniz</b>" in text and "🌐 Sayfa: " in text
    assert f'<a href="{HOST}/fiyatlar">Fiyatlar &amp; Paketler</a>' in text


async def test_the_token_alone_is_the_visitor_and_a_wrong_one_is_nobody(
    tg_server: Server, fake: FakeTelegram, tg_admin_token: str
) -> None:
    token, cid = await widget_start(tg_server, "Ece", f"{HOST}/", "Ana sayfa")
    # HTTP: the header is the visitor's identity, as the cookie is.
    async with jarless() as http:
        async with http.get(tg_server.url + "/chat/older", headers={HEADER: token}) as resp:
            assert resp.status == 200
        async with http.get(tg_server.url + "/chat/older", headers={HEADER: "x" * 43}) as resp:
            assert resp.status == 404
        # A page outside WIDGET_ORIGINS is not recorded.
        async with http.post(
            tg_server.url + "/widget/page",
            json={"url": "https://evil.example/", "title": "x"},
            headers={HEADER: token},
        ) as resp:
            assert resp.status == 400
    assert await query(tg_server, f"SELECT host_url FROM conversation WHERE cid = '{cid}'") == [
        (f"{HOST}/",)
    ]
    # Socket.IO: `auth.token` with no cookie at all.
    visitor = socketio.AsyncClient(reconnection=False)
    await visitor.connect(
        tg_server.url,
        namespaces=["/chat"],
        auth={"as": "visitor", "token": token},
        transports=["websocket"],
        wait_timeout=10,
    )
    try:
        joined = await visitor.call("join", {"chat_id": cid}, namespace="/chat", timeout=10)
        assert joined["ok"] and joined["chat_id"] == cid
        sent = await visitor.call(
            "send",
            {"chat_id": cid, "text": "widget üzerinden", "client_id": client_id()},
            namespace="/chat",
            timeout=10,
        )
        assert sent["ok"], sent
        await fake.wait_for_sent(with_text("widget üzerinden"))
    finally:
        await visitor.disconnect()
    stranger = socketio.AsyncClient(reconnection=False)
    try:
        await stranger.connect(
            tg_server.url,
            namespaces=["/chat"],
            auth={"as": "visitor", "token": "y" * 43},
            transports=["websocket"],
            wait_timeout=10,
        )
    except socketio.exceptions.ConnectionError:
        assert "socket refused: no valid identity" in tg_server.log()
    else:
        await stranger.disconnect()
        raise AssertionError("a made-up token was let in")
    # The operator's pane names the page.
    async with jarless() as http:
        async with http.get(
            f"{tg_server.url}/admin/c/{cid}", headers={"Cookie": f"{ADMIN_COOKIE}={tg_admin_token}"}
        ) as resp:
            pane = await resp.text()
    assert f'href="{HOST}/"' in pane and "Ana sayfa" in pane


async def test_the_entered_notice_follows_the_visitor_to_another_page(
    tg_server: Server, fake: FakeTelegram
) -> None:
    token, cid = await widget_start(tg_server, "Kuzey", f"{HOST}/urunler", "Ürünler")
    notice = await fake.wait_for_sent(with_text(f"[CID: {cid}]"))
    assert f'<a href="{HOST}/urunler">Ürünler</a>' in (notice.text or "")
    async with jarless() as http:
        for url, title in ((f"{HOST}/sepet", "Sepet"), (f"{HOST}/odeme", "Ödeme & Kargo")):
            async with http.post(
                tg_server.url + "/widget/page",
                json={"url": url, "title": title},
                headers={HEADER: token},
            ) as resp:
                assert resp.status == 200, await resp.text()
    # The same message, edited to name the page the visitor is on now; still with its buttons.
    edited = await fake.wait_for_sent(
        lambda m: m.message_id == notice.message_id and "Ödeme &amp; Kargo" in (m.text or "")
    )
    text = edited.text or ""
    assert f'<a href="{HOST}/odeme">Ödeme &amp; Kargo</a>' in text and "Ürünler" not in text
    assert "<b>Kuzey</b>" in text and f"[CID: {cid}]" in text and edited.edits
    assert {"text": "Sohbeti kapat", "callback_data": f"close:{cid}"} in edited.buttons
    # No new message in the chat for it.
    assert [s for s in fake.sent() if f"[CID: {cid}]" in (s.text or "")] == [edited]
