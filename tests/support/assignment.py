"""Assignment over real HTTP: a team of operators signed in on one server, and the pane's
buttons (take, release, transfer) as HTMX sends them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tests.support.clients import admin_csrf, jarless, panel_action, start_visitor
from tests.support.server import Server, query
from tests.support.team import (
    accept_invite,
    admin_headers,
    create_invite,
    sign_in_log,
    team_csrf,
)

PASSWORD = "sifre-1234-uzun"


@dataclass
class Member:
    """A signed-in operator: their name, id, session and CSRF token."""

    name: str
    id: int
    token: str
    csrf: str


async def operator_id(server: Server, name: str) -> int:
    rows = await query(server, f"SELECT id FROM operator WHERE name = '{name}'")
    assert len(rows) == 1, rows
    return int(rows[0][0])


async def member(server: Server, name: str, token: str) -> Member:
    return Member(name, await operator_id(server, name), token, await admin_csrf(server.url, token))


async def join(server: Server, owner: str, name: str) -> Member:
    """The owner invites `name`, who accepts and signs in (the code from the server log)."""
    status, setup, page = await accept_invite(await create_invite(server, owner), name, PASSWORD)
    assert status == 303 and setup, page
    return await member(server, name, await sign_in_log(server, name, PASSWORD))


async def press(server: Server, who: Member, cid: str, action: str, **form: str) -> tuple[int, str]:
    """A pane button: take, release or transfer (with `operator` and `note`)."""
    return await panel_action(
        server.url, who.token, who.csrf, f"/admin/c/{cid}/{action}", data=form or None
    )


async def assignee(server: Server, cid: str) -> tuple[int | None, str]:
    """(assigned operator id, transfer note) as stored."""
    rows = await query(
        server, f"SELECT assigned_operator_id, assign_note FROM conversation WHERE cid = '{cid}'"
    )
    assert len(rows) == 1, rows
    return (None if rows[0][0] is None else int(rows[0][0])), str(rows[0][1])


async def audit_rows(server: Server, action: str, cid: str) -> list[tuple[object, ...]]:
    return await query(
        server,
        "SELECT actor_name, detail FROM audit_entry "
        f"WHERE action = '{action}' AND target = '{cid}' ORDER BY id",
    )


async def new_conversation(server: Server, name: str) -> tuple[str, str]:
    """A visitor's new conversation: (visitor token, CID)."""
    return await start_visitor(server.url, name)


def alert_in(body: str) -> str:
    match = re.search(r'id="assign-error">([^<]+)<', body)
    assert match, body
    return match.group(1)


def tab_badge(body: str, tab: str) -> int:
    """The unread count on a tab's label (0 when it shows none)."""
    match = re.search(
        rf'id="tab-{tab}"[^>]*>[^<]*(?:<span class="badge" data-count="(\d+)")?', body
    )
    assert match, body
    return int(match.group(1) or 0)


async def set_auto_assign(server: Server, owner: str, enabled: bool) -> str:
    """The owner's switch on the team page (HTMX); the section it answers with."""
    csrf = await team_csrf(server, owner)
    async with (
        jarless() as http,
        http.post(
            server.url + "/admin/team/auto-assign",
            data={"enabled": "1" if enabled else "0"},
            headers=admin_headers(owner, csrf, htmx=True),
        ) as r,
    ):
        body = await r.text()
    assert r.status == 200, body
    return body
