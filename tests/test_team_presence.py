"""Presence, typing and "seen" per operator: the panel lists who of the team is online (live,
as tabs open and close), the visitor is told which operator types, and the other operators
which one typed or saw the visitor's messages."""

from __future__ import annotations

import html
import re

from tests.support.clients import ADMIN_COOKIE, admin_peer, page_with, start_visitor, visitor_peer
from tests.support.presence import new_operator, online_names, wait_after
from tests.support.server import ADMIN_PASSWORD, Server
from tests.support.team import OWNER, set_active, sign_in_log


def panel_online(page: str) -> set[str]:
    """The names in the panel header's online list."""
    match = re.search(r'<ul class="team-online" id="team-online".*?</ul>', page, re.S)
    assert match, page[:3000]
    return {html.unescape(n) for n in re.findall(r'title="([^"]+)"', match.group(0))}


async def test_the_panel_lists_the_operators_online(server: Server) -> None:
    owner = await sign_in_log(server, OWNER, ADMIN_PASSWORD)
    ayse = await new_operator(server, owner, "Ayşe")
    owners = await admin_peer(server.url, owner)
    try:
        await owners.wait_for("presence:operator", lambda p: OWNER in online_names(p))
        before = len(owners.events["presence:operator"])
        # Two tabs of hers: she comes online once, and stays while one is open.
        tabs = [await admin_peer(server.url, ayse), await admin_peer(server.url, ayse)]
        came = await wait_after(
            owners, "presence:operator", before, lambda p: online_names(p) == {OWNER, "Ayşe"}
        )
        assert came["online"] is True
        ids = {op["name"]: op["id"] for op in came["operators"]}
        assert all(set(op) == {"id", "name", "initial", "colour"} for op in came["operators"])
        assert isinstance(came["at"], int)
        assert panel_online(await page_with(server.url + "/admin", ADMIN_COOKIE, owner)) == {
            OWNER,
            "Ayşe",
        }
        assert ids["Ayşe"] != ids[OWNER]
        # Her second tab (or one reconnecting) is told the list as it is.
        for tab in tabs:
            await tab.wait_for("presence:operator", lambda p: online_names(p) == {OWNER, "Ayşe"})
        await tabs[0].close()
        await tabs[1].call("typing", {"chat_id": "nope"})  # still answered: still connected
        assert "Ayşe" in panel_online(await page_with(server.url + "/admin", ADMIN_COOKIE, owner))
        before = len(owners.events["presence:operator"])
        await tabs[1].close()
        gone = await wait_after(
            owners, "presence:operator", before, lambda p: online_names(p) == {OWNER}
        )
        assert gone["online"] is True  # the owner is still there
        assert panel_online(await page_with(server.url + "/admin", ADMIN_COOKIE, owner)) == {OWNER}
    finally:
        await owners.close()


async def test_the_visitor_and_the_team_see_which_operator_types_and_saw(server: Server) -> None:
    owner = await sign_in_log(server, OWNER, ADMIN_PASSWORD)
    ayse = await new_operator(server, owner, "Ayşe Nur")
    token, cid = await start_visitor(server.url, "Merve")
    visitor = await visitor_peer(server.url, token)
    owners = await admin_peer(server.url, owner)
    hers = await admin_peer(server.url, ayse)
    try:
        await visitor.call("join", {"chat_id": cid})
        for peer in (owners, hers):
            assert (await peer.call("join", {"chat_id": cid}))["ok"]

        assert (await hers.call("typing", {"chat_id": cid}))["ok"]
        typing = await visitor.wait_for("chat:typing", lambda t: t.get("name") == "Ayşe Nur")
        assert typing["role"] == "admin" and typing["chat_id"] == cid
        assert typing["operator"]["name"] == "Ayşe Nur" and typing["operator"]["initial"] == "A"
        # The owner, with the conversation open, sees who types; her own socket is not told.
        seen_by_owner = await owners.wait_for("chat:typing", lambda t: t.get("name") == "Ayşe Nur")
        assert seen_by_owner["operator"]["id"] == typing["operator"]["id"]
        # The visitor's typing still reaches both, naming no operator.
        assert (await visitor.call("typing", {"chat_id": cid}))["ok"]
        from_visitor = await hers.wait_for("chat:typing", lambda t: t["role"] == "visitor")
        assert "operator" not in from_visitor
        assert not [t for t in hers.events["chat:typing"] if t["role"] == "admin"]

        sent = await visitor.call(
            "send", {"chat_id": cid, "role": "visitor", "type": "text", "text": "Merhaba"}
        )
        seq = sent["message"]["seq"]
        assert (await hers.call("receipt", {"chat_id": cid, "seen": seq}))["ok"]
        receipt = await owners.wait_for(
            "chat:receipt", lambda r: r["reader"] == "admin" and r["seen"] >= seq and "by" in r
        )
        assert receipt["by"]["name"] == "Ayşe Nur"
        # Seeing it again moves nothing and names no one new.
        before = len(owners.events["chat:receipt"])
        assert (await owners.call("receipt", {"chat_id": cid, "seen": seq}))["ok"]
        assert not [r for r in owners.events["chat:receipt"][before:] if "by" in r]
    finally:
        for peer in (visitor, owners, hers):
            await peer.close()


async def test_a_deactivated_operator_leaves_the_online_list_at_once(server: Server) -> None:
    owner = await sign_in_log(server, OWNER, ADMIN_PASSWORD)
    deniz = await new_operator(server, owner, "Deniz")
    owners = await admin_peer(server.url, owner)
    hers = await admin_peer(server.url, deniz)
    try:
        came = await owners.wait_for(
            "presence:operator", lambda p: online_names(p) == {OWNER, "Deniz"}
        )
        deniz_id = next(op["id"] for op in came["operators"] if op["name"] == "Deniz")
        before = len(owners.events["presence:operator"])
        status, row = await set_active(server, owner, deniz_id, False)
        assert status == 200 and 'data-active="0"' in row
        await wait_after(owners, "presence:operator", before, lambda p: online_names(p) == {OWNER})
        assert panel_online(await page_with(server.url + "/admin", ADMIN_COOKIE, owner)) == {OWNER}
    finally:
        await owners.close()
        if hers.sio.connected:
            await hers.close()
