"""What only the owner does: the widget's sites, the saved replies page and the audit trail are
the owner's; an operator still uses saved replies from the composer. The owner's changes to
saved replies and to the widget's sites are in the audit trail, each once, under their name.

A real server with its bot on the fake Bot API; the second operator joins by invitation and
signs in with the code sent to their own Telegram.
"""

from __future__ import annotations

import pytest

from tests.support.audit import entries, last_id, operator_headers, post_as
from tests.support.clients import admin_csrf, start_visitor
from tests.support.fake_telegram import FakeTelegram
from tests.support.server import Server, query
from tests.support.team import (
    OWNER,
    admin_headers,
    get,
    join_team,
    owner_token,
    sign_in_telegram,
    tg_user,
)

PASSWORD = "sifre-1234-uzun"
# The owner's pages, and one write of each (CSRF token added per request).
OWNER_PAGES = ["/admin/widget", "/admin/replies", "/admin/replies/list", "/admin/audit"]
OWNER_WRITES = [
    ("/admin/widget/origins", {"origin": "https://dukkan.example"}),
    ("/admin/widget/origins/remove", {"origin": "https://dukkan.example"}),
    ("/admin/replies", {"shortcut": "gizli", "text_tr": "Merhaba {name}", "text_en": ""}),
]


@pytest.fixture(scope="module")
async def owner(tg_server: Server, fake: FakeTelegram) -> str:
    return await owner_token(tg_server, fake)


@pytest.fixture(scope="module")
async def operator(tg_server: Server, fake: FakeTelegram, owner: str) -> str:
    """Ece, an operator (not the owner), signed in with her own code."""
    ece = tg_user(7780001, "Ece")
    await join_team(tg_server, fake, owner, "Ece", PASSWORD, ece)
    return await sign_in_telegram(tg_server, fake, "Ece", PASSWORD, ece["id"])


async def test_an_operator_is_refused_the_owners_pages_and_changes_nothing(
    tg_server: Server, owner: str, operator: str
) -> None:
    status, panel = await get(tg_server, "/admin", admin_headers(operator))
    assert status == 200
    for link in ("widget-link", "audit-link", "replies-link", "team-link"):
        assert f'id="{link}"' not in panel, link
    for path in OWNER_PAGES:
        status, page = await get(tg_server, path, admin_headers(operator))
        assert status == 403 and "Yalnızca sahip" in page, (path, status)
    csrf = await admin_csrf(tg_server.url, operator)
    before = await query(tg_server, "SELECT COUNT(*) FROM saved_reply")
    settings = await query(tg_server, "SELECT COUNT(*) FROM setting")
    for path, form in OWNER_WRITES:
        status, page = await post_as(tg_server, path, operator_headers(operator, csrf), form)
        assert status == 403, (path, status, page[:200])
    assert await query(tg_server, "SELECT COUNT(*) FROM saved_reply") == before
    assert await query(tg_server, "SELECT COUNT(*) FROM setting") == settings
    # The owner sees them all.
    status, panel = await get(tg_server, "/admin", admin_headers(owner))
    for link in ("widget-link", "audit-link", "replies-link", "team-link"):
        assert f'id="{link}"' in panel, link
    for path in OWNER_PAGES:
        status, _ = await get(tg_server, path, admin_headers(owner))
        assert status == 200, path


async def test_an_operator_still_picks_saved_replies_in_the_composer(
    tg_server: Server, owner: str, operator: str
) -> None:
    csrf = await admin_csrf(tg_server.url, owner)
    form = {"shortcut": "kargo", "text_tr": "Kargonuz yolda.", "text_en": "On its way."}
    status, page = await post_as(tg_server, "/admin/replies", operator_headers(owner, csrf), form)
    assert status in (200, 303), page[:300]
    _, cid = await start_visitor(tg_server.url, "Deniz")
    path = f"/admin/replies/pick?q=kar&cid={cid}"
    status, listing = await get(tg_server, path, admin_headers(operator))
    assert status == 200 and "Kargonuz yolda." in listing, listing[:300]


async def test_the_owners_changes_to_replies_and_sites_are_in_the_trail(
    tg_server: Server, owner: str
) -> None:
    since = await last_id(tg_server)
    csrf = await admin_csrf(tg_server.url, owner)
    headers = operator_headers(owner, csrf)
    form = {"shortcut": "iade", "text_tr": "İade için {cid}.", "text_en": ""}
    status, page = await post_as(tg_server, "/admin/replies", headers, form)
    assert status in (200, 303), page[:300]
    rows = await query(tg_server, "SELECT id FROM saved_reply WHERE shortcut = 'iade'")
    assert len(rows) == 1, rows
    reply_id = int(rows[0][0])
    form = {"shortcut": "iade2", "text_tr": "İade: {cid}.", "text_en": ""}
    status, page = await post_as(tg_server, f"/admin/replies/{reply_id}", headers, form)
    assert status in (200, 303), page[:300]
    status, page = await post_as(tg_server, f"/admin/replies/{reply_id}/delete", headers, {})
    assert status in (200, 303), page[:300]
    # A refused change (the same shortcut twice) is not in the trail.
    await post_as(tg_server, "/admin/replies", headers, {"shortcut": "kargo", "text_tr": "x"})
    site = "https://magaza.example"
    for path in ("/admin/widget/origins", "/admin/widget/origins/remove"):
        status, page = await post_as(tg_server, path, headers, {"origin": site})
        assert status == 303, (path, status, page[:300])
    # Removing a site that is not listed changes nothing and is not recorded.
    status, _ = await post_as(tg_server, "/admin/widget/origins/remove", headers, {"origin": site})
    assert status == 404

    owner_id = (await query(tg_server, f"SELECT id FROM operator WHERE name = '{OWNER}'"))[0][0]
    found = [
        (e.action, e.target, e.actor_id, e.actor_name, e.surface)
        for e in await entries(
            tg_server, f"id > {since} AND action NOT IN ('signin', 'signin_failed')"
        )
    ]
    assert found == [
        ("reply_create", "iade", owner_id, OWNER, "panel"),
        ("reply_update", "iade2", owner_id, OWNER, "panel"),
        ("reply_delete", "iade2", owner_id, OWNER, "panel"),
        ("widget_origin_add", site, owner_id, OWNER, "panel"),
        ("widget_origin_remove", site, owner_id, OWNER, "panel"),
    ]
    renamed = await entries(tg_server, f"id > {since} AND action = 'reply_update'")
    assert renamed[0].detail == {"was": "iade"}
