"""Assignment over the real server, on SQLite and PostgreSQL: two operators racing to take a
conversation (exactly one wins, the other is told who), transfer with a note only operators
see, release, refusals that change nothing, the list's tabs and each operator's unread counts,
and the audit trail recording each change."""

from __future__ import annotations

import asyncio
import itertools
import json
import re

import pytest

from tests.support.assignment import (
    Member,
    alert_in,
    assignee,
    audit_rows,
    join,
    member,
    new_conversation,
    press,
    set_auto_assign,
    tab_badge,
)
from tests.support.clients import (
    VISITOR_COOKIE,
    admin_peer,
    client_id,
    page_with,
    visitor_peer,
)
from tests.support.server import Server, query
from tests.support.team import OWNER, admin_headers, get, set_active

NOTE = "VIP müşteri: kargo iadesini o istedi"


@pytest.fixture(scope="module")
async def team(server: Server, admin_token: str) -> dict[str, Member]:
    """The owner and two operators, each signed in; a third one deactivated."""
    owner = await member(server, OWNER, admin_token)
    members = {"owner": owner}
    for name in ("Ayşe", "Burak", "Cem"):
        members[name] = await join(server, admin_token, name)
    status, _ = await set_active(server, admin_token, members["Cem"].id, False)
    assert status == 200
    return members


async def test_two_operators_taking_at_once_exactly_one_wins(
    server: Server, team: dict[str, Member]
) -> None:
    ayse, burak = team["Ayşe"], team["Burak"]
    for round_ in range(6):
        _, cid = await new_conversation(server, f"Yarış {round_}")
        first, second = (ayse, burak) if round_ % 2 else (burak, ayse)
        answers = await asyncio.gather(
            press(server, first, cid, "take"), press(server, second, cid, "take")
        )
        statuses = sorted(status for status, _ in answers)
        assert statuses == [200, 409], answers
        winner = first if answers[0][0] == 200 else second
        loser_body = answers[1][1] if answers[0][0] == 200 else answers[0][1]
        # The loser sees the pane with who has it, in a clear message.
        assert winner.name in alert_in(loser_body)
        assert (await assignee(server, cid))[0] == winner.id
        takes = await audit_rows(server, "conversation_take", cid)
        assert [row[0] for row in takes] == [winner.name]
        # Pressing again as the winner changes nothing.
        status, body = await press(server, winner, cid, "take")
        assert status == 200 and 'id="release-button"' in body
        assert len(await audit_rows(server, "conversation_take", cid)) == 1


async def test_transfer_with_a_note_only_operators_see(
    server: Server, team: dict[str, Member]
) -> None:
    ayse, burak = team["Ayşe"], team["Burak"]
    visitor, cid = await new_conversation(server, "Nazlı")
    peer = await visitor_peer(server.url, visitor)
    try:
        await peer.call("join", {"chat_id": cid})
        await peer.call("send", {"chat_id": cid, "text": "merhaba", "client_id": client_id()})
        status, _ = await press(server, ayse, cid, "take")
        assert status == 200
        status, body = await press(server, ayse, cid, "transfer", operator=str(burak.id), note=NOTE)
        assert status == 200, body
        assert await assignee(server, cid) == (burak.id, NOTE)
        # Burak, opening it, reads the note with who wrote it; Ayşe no longer has it.
        status, pane = await get(
            server, f"/admin/c/{cid}", {**admin_headers(burak.token), "HX-Request": "true"}
        )
        assert status == 200 and 'id="transfer-note"' in pane and "VIP müşteri" in pane
        assert "Ayşe" in pane
        status, pane = await get(
            server, f"/admin/c/{cid}", {**admin_headers(ayse.token), "HX-Request": "true"}
        )
        assert 'id="transfer-note"' not in pane
        # The visitor never sees it: not on the page, not in a history replay, not as an event.
        page = await page_with(server.url + "/", VISITOR_COOKIE, visitor)
        assert "VIP" not in page and "kargo iadesini" not in page
        history = await peer.call("join", {"chat_id": cid})
        assert history["ok"]
        assert "VIP" not in json.dumps(peer.events, ensure_ascii=False)
        entries = await audit_rows(server, "conversation_transfer", cid)
        assert len(entries) == 1 and entries[0][0] == "Ayşe"
        detail = json.loads(str(entries[0][1]))
        assert detail["from"] == "Ayşe" and detail["to"] == "Burak" and detail["note"] == NOTE
    finally:
        await peer.close()


async def test_release_and_refusals_change_nothing(server: Server, team: dict[str, Member]) -> None:
    ayse, burak, cem = team["Ayşe"], team["Burak"], team["Cem"]
    _, cid = await new_conversation(server, "Selin")
    status, _ = await press(server, burak, cid, "take")
    assert status == 200
    refusals = [
        (ayse, "take", {}, 409, "Burak"),
        (ayse, "release", {}, 409, "Burak"),
        (ayse, "transfer", {"operator": str(ayse.id), "note": "x"}, 409, "Burak"),
        (burak, "transfer", {"operator": str(cem.id), "note": "x"}, 400, ""),
        (burak, "transfer", {"operator": "999999", "note": "x"}, 400, ""),
        (burak, "transfer", {"operator": "abc", "note": "x"}, 400, ""),
        (burak, "transfer", {"operator": str(burak.id), "note": ""}, 400, "Burak"),
        (burak, "transfer", {"operator": str(ayse.id), "note": "ç" * 501}, 400, "500"),
    ]
    for who, action, form, expected, mentioned in refusals:
        status, body = await press(server, who, cid, action, **form)
        assert status == expected, (action, form, body)
        assert mentioned in alert_in(body)
        assert await assignee(server, cid) == (burak.id, "")
    assert await audit_rows(server, "conversation_transfer", cid) == []
    assert len(await audit_rows(server, "conversation_take", cid)) == 1
    # Burak releases it; it is unassigned, and releasing again is refused with a reason.
    status, body = await press(server, burak, cid, "release")
    assert status == 200 and 'id="take-button"' in body
    assert await assignee(server, cid) == (None, "")
    releases = await audit_rows(server, "conversation_release", cid)
    assert [row[0] for row in releases] == ["Burak"]
    status, body = await press(server, burak, cid, "release")
    assert status == 400 and alert_in(body)
    # The owner may release anyone's conversation.
    status, _ = await press(server, ayse, cid, "take")
    assert status == 200
    status, _ = await press(server, team["owner"], cid, "release")
    assert status == 200 and await assignee(server, cid) == (None, "")


async def test_tabs_and_unread_counts_per_operator(server: Server, team: dict[str, Member]) -> None:
    ayse, burak = team["Ayşe"], team["Burak"]
    hers_token, hers = await new_conversation(server, "Tab Onun")
    free_token, free = await new_conversation(server, "Tab Boşta")
    for token, cid, count in ((hers_token, hers, 2), (free_token, free, 3)):
        peer = await visitor_peer(server.url, token)
        try:
            await peer.call("join", {"chat_id": cid})
            for n in range(count):
                await peer.call("send", {"chat_id": cid, "text": f"s{n}", "client_id": client_id()})
        finally:
            await peer.close()
    status, _ = await press(server, ayse, hers, "take")
    assert status == 200

    async def tab(who: Member, name: str) -> str:
        status, body = await get(
            server, f"/admin/conversations/rows?tab={name}", admin_headers(who.token, htmx=True)
        )
        assert status == 200, body
        return body

    mine = await tab(ayse, "mine")
    assert f'data-chat-id="{hers}"' in mine and f'data-chat-id="{free}"' not in mine
    unassigned = await tab(ayse, "unassigned")
    assert f'data-chat-id="{free}"' in unassigned and f'data-chat-id="{hers}"' not in unassigned
    every = await tab(ayse, "all")
    assert f'data-chat-id="{free}"' in every and f'data-chat-id="{hers}"' in every
    # Taking it opened it: Ayşe has read hers; Burak has read neither.
    assert tab_badge(mine, "mine") == 0 and _row_badge(mine, hers) == 0
    assert _row_badge(every, free) == 3
    burak_all = await tab(burak, "all")
    assert _row_badge(burak_all, hers) == 2 and _row_badge(burak_all, free) == 3
    assert tab_badge(burak_all, "mine") == 0
    burak_unassigned = tab_badge(burak_all, "unassigned")
    assert burak_unassigned >= 1
    # Burak reads the free one: his counts drop, Ayşe's do not.
    status, _ = await get(server, f"/admin/c/{free}", admin_headers(burak.token, htmx=True))
    assert status == 200
    burak_after = await tab(burak, "all")
    assert _row_badge(burak_after, free) == 0 and _row_badge(burak_after, hers) == 2
    assert tab_badge(burak_after, "unassigned") == burak_unassigned - 1
    assert _row_badge(await tab(ayse, "all"), free) == 3
    # The visitor writes again in hers: one unread for Ayşe, on her Mine tab.
    peer = await visitor_peer(server.url, hers_token)
    try:
        await peer.call("join", {"chat_id": hers})
        await peer.call("send", {"chat_id": hers, "text": "s3", "client_id": client_id()})
    finally:
        await peer.close()
    mine = await tab(ayse, "mine")
    assert tab_badge(mine, "mine") == 1 and _row_badge(mine, hers) == 1
    assert _row_badge(await tab(burak, "all"), hers) == 3


async def test_automatic_assignment_takes_turns_among_online_operators(
    server: Server, team: dict[str, Member]
) -> None:
    ayse, burak, owner = team["Ayşe"], team["Burak"], team["owner"]
    # Off (the default): a new conversation waits unassigned.
    _, cid = await new_conversation(server, "Oto Yok")
    assert await assignee(server, cid) == (None, "")
    section = await set_auto_assign(server, owner.token, True)
    assert 'data-enabled="1"' in section
    # Ayşe and Burak have the panel open; the owner (and the deactivated Cem) do not.
    peers = [await admin_peer(server.url, ayse.token), await admin_peer(server.url, burak.token)]
    try:
        given = []
        for n in range(4):
            _, cid = await new_conversation(server, f"Oto {n}")
            given.append((await assignee(server, cid))[0])
        assert set(given) == {ayse.id, burak.id}
        # In turn: never the same operator twice in a row.
        assert all(a != b for a, b in itertools.pairwise(given)), given
        assert given.count(ayse.id) == 2
    finally:
        for peer in peers:
            await peer.close()
        section = await set_auto_assign(server, owner.token, False)
    assert 'data-enabled="0"' in section
    _, cid = await new_conversation(server, "Oto Kapalı")
    assert await assignee(server, cid) == (None, "")
    switches = await query(
        server, "SELECT actor_name, detail FROM audit_entry WHERE action = 'auto_assign_setting'"
    )
    assert [(row[0], json.loads(str(row[1]))["enabled"]) for row in switches] == [
        (OWNER, True),
        (OWNER, False),
    ]


async def test_deactivating_an_operator_returns_their_conversations_to_unassigned(
    server: Server, team: dict[str, Member]
) -> None:
    owner, ayse = team["owner"], team["Ayşe"]
    deniz = await join(server, owner.token, "Deniz")
    _, cid = await new_conversation(server, "Deniz'in")
    status, _ = await press(server, deniz, cid, "take")
    assert status == 200 and (await assignee(server, cid))[0] == deniz.id
    status, _ = await set_active(server, owner.token, deniz.id, False)
    assert status == 200
    assert await assignee(server, cid) == (None, "")
    # Nobody can hand it back to her while she is deactivated.
    status, body = await press(server, ayse, cid, "transfer", operator=str(deniz.id), note="")
    assert status == 400 and alert_in(body)
    assert await assignee(server, cid) == (None, "")


def _row_badge(body: str, cid: str) -> int:
    """The unread badge on one conversation's row (0 when it shows none)."""
    match = re.search(rf'data-chat-id="{cid}".*?</li>', body, re.S)
    assert match, body
    badge = re.search(r'<span class="badge"[^>]*>(\d+)</span>', match.group(0))
    return int(badge.group(1)) if badge else 0
