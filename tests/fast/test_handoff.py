"""Continuing a conversation on another device, in-process: the one-time link, a preview that
does not use it up, the takeover, and a second use refused."""

from __future__ import annotations

import html
import re

from quart.typing import TestAppProtocol as App

from tests.support.clients import VISITOR_COOKIE
from tests.support.inprocess import set_cookie, text_of

EXPIRED = "Bu bağlantının süresi dolmuş ya da zaten kullanılmış. Diğer cihazdan yenisini isteyin."
ALERT = re.compile(r'<p class="alert" role="alert">(.*?)</p>', re.S)


def chat_id(page: str) -> str | None:
    found = re.search(r'id="conversation" data-chat-id="([^"]+)"', page)
    return found.group(1) if found else None


async def test_the_link_moves_the_conversation_once(app: App) -> None:
    phone, laptop, third = app.test_client(), app.test_client(), app.test_client()
    r = await phone.post("/start", form={"name": "Eda"})
    assert r.status_code == 303
    cid = chat_id(await text_of(await phone.get("/")))
    assert cid

    r = await phone.post("/handoff")
    assert r.status_code == 200
    link = re.search(r'id="handoff-link" readonly value="([^"]+)"', await text_of(r))
    assert link, await text_of(r)
    path = "/" + html.unescape(link.group(1)).split("/", 3)[3]
    assert path.startswith("/continue/")

    # A link preview (or a scanner) only GETs: it sees a button and uses nothing up.
    for _ in range(2):
        r = await third.get(path)
        assert r.status_code == 200
        assert f'action="{path}"' in await text_of(r)

    r = await laptop.post(path)
    assert r.status_code == 303 and r.headers["Location"] == "/"
    assert "HttpOnly" in set_cookie(r, VISITOR_COOKIE)
    assert chat_id(await text_of(await laptop.get("/"))) == cid
    # The phone's cookie no longer opens the conversation.
    assert chat_id(await text_of(await phone.get("/"))) is None

    r = await third.post(path)
    assert r.status_code == 410
    assert ALERT.findall(await text_of(r)) == [EXPIRED]
    r = await third.get(path)
    assert r.status_code == 410
    assert chat_id(await text_of(await third.get("/"))) is None


async def test_no_link_without_a_conversation_and_none_for_made_up_tokens(app: App) -> None:
    nobody = app.test_client()
    assert (await nobody.post("/handoff")).status_code == 404
    for token in ("made-up", "x" * 200):
        r = await nobody.post(f"/continue/{token}")
        assert r.status_code == 410
        assert ALERT.findall(await text_of(r)) == [EXPIRED]
