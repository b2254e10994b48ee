"""Saved replies for the tests: added through the panel's page as the operator does, and a
visitor whose page is in a given language (the language a saved reply is sent in)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tests.support.clients import (
    VISITOR_COOKIE,
    Peer,
    admin_csrf,
    jarless,
    panel_action,
    start_visitor,
    visitor_peer,
)
from tests.support.server import Server


async def save_reply(server: Server, token: str, **form: str) -> None:
    """Add a saved reply through the panel's page (already there from another test: kept)."""
    csrf = await admin_csrf(server.url, token)
    status, body = await panel_action(server.url, token, csrf, "/admin/replies", form)
    if status == 400 and "zaten var" in body:
        return
    assert status == 200, body


async def visitor_speaking(server: Server, name: str, language: str) -> tuple[str, str]:
    """A new conversation whose visitor's page is in `language`: (visitor token, CID)."""
    headers = {"Accept-Language": language}
    token, cid = await start_visitor(server.url, name, headers=headers)
    async with jarless() as http:
        cookie = {"Cookie": f"{VISITOR_COOKIE}={token}", **headers}
        async with http.get(server.url + "/", headers=cookie) as r:
            assert r.status == 200
    return token, cid


@asynccontextmanager
async def visitor_in(server: Server, name: str, language: str) -> AsyncIterator[tuple[Peer, str]]:
    """`visitor_speaking`, joined to the conversation over Socket.IO (closed afterwards)."""
    token, cid = await visitor_speaking(server, name, language)
    peer = await visitor_peer(server.url, token)
    await peer.call("join", {"chat_id": cid})
    try:
        yield peer, cid
    finally:
        await peer.close()


def admin_texts(peer: Peer) -> list[str]:
    """The operator's messages a visitor's socket received, in order (repeats included)."""
    return [m["text"] for m in peer.events["chat:message"] if m["role"] == "admin"]
