"""The audit trail end to end: every operator action of today, from the panel and from Telegram
(the fake Bot API), recorded once with its actor, target, surface and address; the owner's page
with its filters and pages; the CSV export; and that nobody can change an entry.

The operator's client address comes through a trusted proxy (X-Forwarded-For), so each test
signs its requests with an address of its own and finds it back in the trail.
"""

from __future__ import annotations

import csv
import html
import io
import re
import secrets
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pyotp
import pytest
from werkzeug.routing import Rule

from app import create_app
from tests.support.audit import (
    Entry,
    address_hash,
    entries,
    get_as,
    last_id,
    listed_ids,
    operator_headers,
    post_as,
    wait_for_entries,
)
from tests.support.clients import (
    VISITOR_COOKIE,
    admin_csrf,
    client_id,
    cookie_from,
    jarless,
    start_visitor,
    visitor_peer,
)
from tests.support.fake_telegram import FakeTelegram
from tests.support.server import ADMIN_PASSWORD, Server, execute_sql, query
from tests.support.telegram import joined_visitor, with_text

# The operator's name starts with "=", as a formula would: the CSV must neutralise it (and the
# page escape it). The address of each request is believed from the local proxy.
OPERATOR = "=Ayşe"
SERVER_ENV = {
    "TRUSTED_PROXIES": "127.0.0.1",
    "OPERATOR_NAME": OPERATOR,
    "LOGIN_CODES_PER_HOUR": "60",
}
ZONE = ZoneInfo("Europe/Istanbul")


def summary(found: list[Entry]) -> list[tuple[str, str, str, str]]:
    return [(e.action, e.actor_name, e.target, e.surface) for e in found]


async def visitor_with_messages(server: Server, name: str, count: int) -> tuple[str, str]:
    """A visitor's conversation with `count` messages (seq 1..count); (visitor token, CID).

    Each visitor comes from an address of their own: blocking one blocks no other test's."""
    address = f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"
    token, cid = await start_visitor(server.url, name, headers={"X-Forwarded-For": address})
    peer = await visitor_peer(server.url, token)
    try:
        await peer.call("join", {"chat_id": cid})
        for n in range(count):
            await peer.call("send", {"chat_id": cid, "text": f"m{n}", "client_id": client_id()})
    finally:
        await peer.close()
    return token, cid


async def test_every_panel_action_is_recorded_once(server: Server, admin_token: str) -> None:
    csrf = await admin_csrf(server.url, admin_token)
    address = "203.0.113.7"
    headers = operator_headers(admin_token, csrf, address, htmx=True)
    _, cid = await visitor_with_messages(server, 'Eda "Kara", Yıldız', 4)
    mark = await last_id(server)

    for path, data in [
        (f"/admin/c/{cid}/messages/delete", {"seq": ["2", "3"]}),
        # Already deleted: nothing is deleted, nothing recorded.
        (f"/admin/c/{cid}/messages/delete", {"seq": ["2"]}),
        (f"/admin/c/{cid}/close", None),
        (f"/admin/c/{cid}/reopen", None),
        (f"/admin/c/{cid}/block", None),
        (f"/admin/c/{cid}/unblock", None),
        (f"/admin/c/{cid}/delete", None),
    ]:
        status, body = await post_as(server, path, headers, data)
        assert status == 200, (path, body)

    found = await entries(server, f"id > {mark}")
    assert summary(found) == [
        (action, OPERATOR, cid, "panel")
        for action in (
            "message_delete",
            "conversation_close",
            "conversation_reopen",
            "visitor_block",
            "visitor_unblock",
            "conversation_delete",
        )
    ]
    owner = await query(server, "SELECT id FROM operator WHERE role = 'owner'")
    for entry in found:
        assert entry.address == address_hash(address)
        assert (entry.actor_id,) == owner[0]  # the session's operator: the owner
        assert entry.detail["visitor"] == 'Eda "Kara", Yıldız'
    assert found[0].detail["seqs"] == [2, 3]
    assert found[-1].detail["messages"] == 2, "two messages were left when it was deleted"
    assert address not in str(await query(server, "SELECT * FROM audit_entry")), "no plain IPs"

    # Deleting the conversation left its history in the trail.
    assert len(await entries(server, f"target = '{cid}'")) == 6

    # A refused action (no CSRF token) changes nothing and records nothing.
    _, other = await visitor_with_messages(server, "Refused", 1)
    mark = await last_id(server)
    status, _ = await post_as(
        server, f"/admin/c/{other}/block", operator_headers(admin_token, "", address, htmx=True)
    )
    assert status == 403
    assert await entries(server, f"id > {mark}") == []


async def sign_in(
    server: Server, address: str, password: str, code: str | None
) -> tuple[int, str | None]:
    """The two login steps from `address`; `code` None: the code from the server log."""
    forwarded = {"X-Forwarded-For": address}
    async with jarless() as http:
        async with http.post(
            server.url + "/admin/login",
            data={"password": password},
            headers=forwarded,
            allow_redirects=False,
        ) as r:
            challenge = cookie_from(r, "sohbet_login")
            if r.status != 303 or not challenge:
                return r.status, None
        async with http.post(
            server.url + "/admin/verify",
            data={"code": code or server.last_login_code()},
            headers={**forwarded, "Cookie": f"sohbet_login={challenge}"},
            allow_redirects=False,
        ) as r:
            return r.status, cookie_from(r, "sohbet_admin")


async def test_sign_in_failures_success_and_sign_out(server: Server) -> None:
    address = "198.51.100.23"
    mark = await last_id(server)
    assert await sign_in(server, address, "not the password", None) == (400, None)
    status, token = await sign_in(server, address, ADMIN_PASSWORD, "000000")
    assert (status, token) == (400, None)
    # A made-up challenge is not a try: nothing is recorded for it.
    async with jarless() as http:
        async with http.post(
            server.url + "/admin/verify",
            data={"code": "123456"},
            headers={"Cookie": "sohbet_login=made-up", "X-Forwarded-For": address},
            allow_redirects=False,
        ) as r:
            assert r.status == 400
    status, token = await sign_in(server, address, ADMIN_PASSWORD, None)
    assert status == 303 and token
    csrf = await admin_csrf(server.url, token)
    status, _ = await post_as(
        server, "/admin/logout", operator_headers(token, csrf, "2001:db8::5"), {"csrf_token": csrf}
    )
    assert status == 303

    found = await entries(server, f"id > {mark}")
    assert [(e.action, e.actor_name, e.target, e.surface) for e in found] == [
        ("signin_failed", "", OPERATOR, "panel"),
        ("signin_failed", "", OPERATOR, "panel"),
        ("signin", OPERATOR, OPERATOR, "panel"),
        ("signout", OPERATOR, OPERATOR, "panel"),
    ]
    assert found[0].detail == {"step": "password", "reason": "wrong_password"}
    assert found[1].detail == {"step": "telegram", "reason": "code_invalid"}
    assert found[2].detail == {"method": "telegram"}
    assert [e.address for e in found] == [address_hash(address)] * 3 + [address_hash("2001:db8::5")]


async def test_authenticator_app_changes_are_recorded(server: Server, admin_token: str) -> None:
    csrf = await admin_csrf(server.url, admin_token)
    headers = operator_headers(admin_token, "", "192.0.2.44")
    await execute_sql(server, "DELETE FROM recovery_code")
    await execute_sql(server, "DELETE FROM totp_factor")
    mark = await last_id(server)
    status, page = await post_as(server, "/admin/security/totp", headers, {"csrf_token": csrf})
    assert status == 200, page
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page)
    assert secret, page
    code = pyotp.TOTP(secret.group(1)).now()
    status, page = await post_as(
        server, "/admin/security/totp/confirm", headers, {"csrf_token": csrf, "code": code}
    )
    assert status == 200, page
    codes = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", page)
    assert len(codes) == 10, page
    # A wrong code changes nothing and records nothing.
    status, _ = await post_as(
        server,
        "/admin/security/change",
        headers,
        {"csrf_token": csrf, "action": "remove", "code": "not-a-code"},
    )
    assert status == 400
    for action in ("recovery", "remove"):
        # A recovery code authorizes the change (new recovery codes replace the old ones).
        status, page = await post_as(
            server,
            "/admin/security/change",
            headers,
            {"csrf_token": csrf, "action": action, "code": codes[0]},
        )
        assert status == 200, page
        codes = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", page) or codes[1:]
    found = await entries(server, f"id > {mark}")
    assert summary(found) == [
        ("totp_enrol", OPERATOR, OPERATOR, "panel"),
        ("totp_recovery", OPERATOR, OPERATOR, "panel"),
        ("totp_remove", OPERATOR, OPERATOR, "panel"),
    ]
    assert {e.address for e in found} == {address_hash("192.0.2.44")}


async def audit_page(
    server: Server, token: str, *, htmx: bool = True, **params: str
) -> tuple[int, str]:
    status, body, _ = await get_as(
        server, "/admin/audit", operator_headers(token, htmx=htmx), params=params
    )
    return status, body


async def test_the_page_lists_newest_first_and_filters(server: Server, admin_token: str) -> None:
    csrf = await admin_csrf(server.url, admin_token)
    _, first = await visitor_with_messages(server, "Filtre", 0)
    _, second = await visitor_with_messages(server, "Süzgeç", 0)
    mark = await last_id(server)
    for path, address in [
        (f"/admin/c/{first}/close", "203.0.113.81"),
        (f"/admin/c/{second}/block", "203.0.113.82"),
        (f"/admin/c/{second}/close", "203.0.113.82"),
    ]:
        status, _ = await post_as(
            server, path, operator_headers(admin_token, csrf, address, htmx=True)
        )
        assert status == 200
    ids = [e.id for e in await entries(server, f"id > {mark}")]
    assert len(ids) == 3

    status, page = await audit_page(server, admin_token, htmx=False)
    assert status == 200
    assert 'id="audit-filter"' in page and "hiçbir zaman düzenlenmez ya da silinmez" in page
    _, english, _ = await get_as(
        server, "/admin/audit", {**operator_headers(admin_token), "Accept-Language": "en"}
    )
    assert "Entries are never edited or deleted" in english and "Closed a conversation" in english
    assert listed_ids(page)[:3] == ids[::-1], "newest first"
    assert html.escape(OPERATOR) in page and f'<option value="{html.escape(OPERATOR)}"' in page

    status, part = await audit_page(server, admin_token, target=second)
    assert status == 200 and part.startswith('<div class="audit-results" id="audit-results"')
    assert listed_ids(part) == ids[:0:-1]
    status, part = await audit_page(server, admin_token, target="süzgeç")
    assert listed_ids(part) == ids[:0:-1], "the visitor's name finds the entries"
    status, part = await audit_page(
        server, admin_token, target=second.lower(), action="conversation_close"
    )
    assert listed_ids(part) == [ids[2]]
    status, part = await audit_page(server, admin_token, address="203.0.113.81")
    assert listed_ids(part) == [ids[0]]
    status, part = await audit_page(server, admin_token, actor=OPERATOR, target=first)
    assert listed_ids(part) == [ids[0]]
    status, part = await audit_page(server, admin_token, actor="Nobody", target=first)
    assert listed_ids(part) == [] and "Eşleşen kayıt yok." in part

    today = datetime.now(ZONE).date()
    status, part = await audit_page(
        server, admin_token, target=first, since=str(today), until=str(today)
    )
    assert listed_ids(part) == [ids[0]]
    yesterday = str(today - timedelta(days=1))
    status, part = await audit_page(server, admin_token, target=first, until=yesterday)
    assert listed_ids(part) == []

    for params, message in [
        ({"since": str(today), "until": yesterday}, "Başlangıç tarihi bitiş tarihinden sonra."),
        ({"since": "04.12.2026"}, "Tarihleri YYYY-AA-GG biçiminde yazın."),
        ({"action": "drop_table"}, "Böyle bir işlem yok."),
        ({"address": "not-an-ip"}, "Bu bir IP adresi değil"),
    ]:
        status, part, _ = await get_as(
            server, "/admin/audit", operator_headers(admin_token, htmx=True), params=params
        )
        assert status == 400 and message in part and listed_ids(part) == [], params
        status, page, _ = await get_as(
            server, "/admin/audit", operator_headers(admin_token), params=params
        )
        assert status == 400 and message in page
        if "action" not in params:  # a select offers only real actions
            assert all(f'value="{value}"' in page for value in params.values()), "kept as typed"


async def insert_entries(server: Server, rows: list[tuple[str, str, str]]) -> None:
    """Arrange many entries at once: (UTC time as 'YYYY-MM-DD HH:MM:SS', action, target)."""
    values = ", ".join(
        f"('{at}+00:00', NULL, 'Arşiv', '{action}', '{target}', '', '', 'panel')"
        for at, action, target in rows
    )
    await execute_sql(
        server,
        'INSERT INTO audit_entry ("at", "actor_id", "actor_name", "action", "target", "detail",'
        f' "address", "surface") VALUES {values}',
    )


async def test_pages_and_whole_days_in_the_display_zone(server: Server, admin_token: str) -> None:
    # 21:30 UTC on 10 January is 00:30 on the 11th in Istanbul.
    await insert_entries(server, [("2026-01-10 21:30:00", "signin", "zone-probe")])
    for day, count in [("2026-01-11", 1), ("2026-01-10", 0)]:
        _, part = await audit_page(server, admin_token, target="zone-probe", since=day, until=day)
        assert len(listed_ids(part)) == count, day

    await insert_entries(
        server,
        [
            (f"2026-02-01 10:{n // 60:02d}:{n % 60:02d}", "signout", f"page-{n:03d}")
            for n in range(120)
        ],
    )
    ids = [e.id for e in await entries(server, "target LIKE 'page-%'")]
    _, part = await audit_page(server, admin_token, target="page-")
    assert listed_ids(part) == ids[::-1][:50] and "120 kayıttan 1–50" in part
    assert 'rel="next"' in part and 'rel="prev"' not in part
    _, part = await audit_page(server, admin_token, target="page-", page="3")
    assert listed_ids(part) == ids[::-1][100:] and "Sayfa 3 / 3" in part
    assert 'rel="next"' not in part and "target=page-&amp;page=2" in part
    _, part = await audit_page(server, admin_token, target="page-", page="99")
    assert listed_ids(part) == ids[::-1][100:], "past the end: the last page"


async def test_csv_export_is_the_filtered_set_neutralised(server: Server, admin_token: str) -> None:
    hostile = ["=HYPERLINK(1)", "+SUM(A1)", "-2+3", "@cmd", "\tx", 'a,b "c"']
    await insert_entries(
        server, [("2026-03-01 09:00:00", "signin", t.replace("'", "''")) for t in hostile]
    )
    # More than one batch of the stream (500), in order.
    await insert_entries(
        server,
        [
            (f"2026-03-02 09:{n // 60:02d}:{n % 60:02d}", "signout", f"bulk-{n:04d}")
            for n in range(1100)
        ],
    )
    status, body, headers = await get_as(
        server,
        "/admin/audit/export.csv",
        operator_headers(admin_token),
        params={"since": "2026-03-01", "until": "2026-03-01"},
    )
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert headers["Content-Disposition"].startswith('attachment; filename="sohbet-audit-')
    assert body.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(body[1:])))
    assert rows[0][:5] == ["Saat", "Operatör", "Operatör no", "İşlem kodu", "İşlem"]
    targets = [row[5] for row in rows[1:]]
    assert sorted(targets) == sorted(
        ["'=HYPERLINK(1)", "'+SUM(A1)", "'-2+3", "'@cmd", "'\tx", 'a,b "c"']
    )
    assert {row[1] for row in rows[1:]} == {"Arşiv"}
    assert {row[3] for row in rows[1:]} == {"signin"} and {row[4] for row in rows[1:]} == {
        "Giriş yaptı"
    }
    assert rows[1][0].startswith("2026-03-01T12:00:00+03:00")

    status, body, _ = await get_as(
        server, "/admin/audit/export.csv", operator_headers(admin_token), params={"target": "bulk-"}
    )
    got = [row[5] for row in csv.reader(io.StringIO(body[1:]))][1:]
    assert got == [f"bulk-{n:04d}" for n in reversed(range(1100))]

    # The operator's own name starts with "=": neutralised where it is the actor.
    status, body, _ = await get_as(
        server,
        "/admin/audit/export.csv",
        operator_headers(admin_token),
        params={"action": "signin"},
    )
    actors = {row[1] for row in csv.reader(io.StringIO(body[1:]))}
    assert "'" + OPERATOR in actors and OPERATOR not in actors

    status, body, _ = await get_as(
        server, "/admin/audit/export.csv", operator_headers(admin_token), params={"since": "x"}
    )
    assert status == 400 and "YYYY-AA-GG" in body


async def test_visitors_and_strangers_cannot_see_the_trail(server: Server) -> None:
    token, _ = await start_visitor(server.url, "Meraklı", headers={"X-Forwarded-For": "10.255.0.1"})
    for path in ("/admin/audit", "/admin/audit/export.csv?action=signin"):
        for headers in (
            {},
            {"Cookie": f"{VISITOR_COOKIE}={token}"},
            {"Cookie": "sohbet_admin=forged"},
        ):
            status, body, answer = await get_as(server, path, headers)
            assert status == 303 and answer["Location"] == "/admin", (path, headers)
            assert "audit-row" not in body
            status, body, answer = await get_as(server, path, {**headers, "HX-Request": "true"})
            assert status == 401 and answer["HX-Redirect"] == "/admin"


def test_every_audit_route_only_reads() -> None:
    app = create_app({"SOHBET_ENV_FILE": "/nonexistent", "DATABASE_URL": "sqlite://:memory:"})
    rules: list[Rule] = [r for r in app.url_map.iter_rules() if "audit" in r.rule]
    assert {r.rule for r in rules} == {"/admin/audit", "/admin/audit/export.csv"}
    for rule in rules:
        assert set(rule.methods or ()) <= {"GET", "HEAD", "OPTIONS"}, rule


async def test_no_request_edits_or_deletes_an_entry(server: Server, admin_token: str) -> None:
    csrf = await admin_csrf(server.url, admin_token)
    before = await query(server, "SELECT id, action, target, detail FROM audit_entry ORDER BY id")
    assert before
    newest = before[-1][0]
    headers = operator_headers(admin_token, csrf)
    async with jarless() as http:
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            for path in ("/admin/audit", f"/admin/audit/{newest}", "/admin/audit/export.csv"):
                async with http.request(
                    method, server.url + path, headers=headers, data={"csrf_token": csrf}
                ) as r:
                    assert r.status in (404, 405), (method, path, r.status)
    after = await query(server, "SELECT id, action, target, detail FROM audit_entry ORDER BY id")
    assert after == before


@pytest.mark.parametrize("cell", ["=1+2", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1"])
def test_formula_cells_are_neutralised(cell: str) -> None:
    from app.audit.export import neutral

    assert neutral(cell) == "'" + cell
    assert neutral("Eda-7F3C") == "Eda-7F3C" and neutral(None) == ""


async def test_telegram_commands_and_buttons_are_recorded(
    tg_server: Server, fake: FakeTelegram, tg_admin_token: str
) -> None:
    async with joined_visitor(tg_server, "Telgraf") as (_, cid):
        notice = await fake.wait_for_sent(with_text(f"[CID: {cid}]"))
        where = f"target = '{cid}'"
        await fake.admin_command(f"/ban {cid}")
        await wait_for_entries(tg_server, where, lambda found: len(found) == 1)
        await fake.admin_command(f"/unban {cid}")
        await wait_for_entries(tg_server, where, lambda found: len(found) == 2)
        await fake.admin_button(notice, f"close:{cid}")
        await wait_for_entries(tg_server, where, lambda found: len(found) == 3)
        await fake.admin_button(notice, f"reopen:{cid}")
        found = await wait_for_entries(tg_server, where, lambda found: len(found) >= 4)
    assert summary(found) == [
        (action, "Destek", cid, "telegram")
        for action in (
            "visitor_block",
            "visitor_unblock",
            "conversation_close",
            "conversation_reopen",
        )
    ]
    # The admin chat's user is the owner (a private chat): the entries are the owner's.
    owner = (await query(tg_server, "SELECT id FROM operator WHERE role = 'owner'"))[0][0]
    for entry in found:
        assert entry.address == "" and entry.actor_id == owner
        assert entry.detail == {
            "telegram_user": "Operatör",
            "telegram_id": fake.admin_user["id"],
            "visitor": "Telgraf",
        }
    # Signing in with the code from Telegram was recorded too.
    signins = await entries(tg_server, "action = 'signin'")
    assert signins and signins[-1].detail == {"method": "telegram"}
    # And the page shows who did it in Telegram.
    _, page, _ = await get_as(
        tg_server, "/admin/audit", operator_headers(tg_admin_token), params={"target": cid}
    )
    assert page.count("Telegram kullanıcısı: Operatör (5550001)") == 4


REFUSE_SQLITE = (
    "CREATE TRIGGER audit_refuse BEFORE INSERT ON audit_entry "
    "BEGIN SELECT RAISE(ABORT, 'audit refused'); END"
)
REFUSE_POSTGRES = (
    "CREATE FUNCTION audit_refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'audit refused'; "
    "END $$ LANGUAGE plpgsql; CREATE TRIGGER audit_refuse BEFORE INSERT ON audit_entry "
    "FOR EACH ROW EXECUTE FUNCTION audit_refuse()"
)


async def test_no_action_without_its_entry_and_no_sign_out_lost_to_the_trail(
    server: Server, admin_token: str
) -> None:
    """The database refuses audit rows: a conversation change fails whole (it and its entry are
    one transaction), while signing out, recorded after the fact, still happens and the entry
    goes to the server log."""
    csrf = await admin_csrf(server.url, admin_token)
    _, cid = await visitor_with_messages(server, "Atomik", 0)
    status, token = await sign_in(server, "192.0.2.99", ADMIN_PASSWORD, None)
    assert status == 303 and token
    token_csrf = await admin_csrf(server.url, token)
    sqlite = server.database_url.startswith("sqlite://")
    await execute_sql(server, REFUSE_SQLITE if sqlite else REFUSE_POSTGRES)
    try:
        status, _ = await post_as(
            server, f"/admin/c/{cid}/close", operator_headers(admin_token, csrf, htmx=True)
        )
        assert status == 500
        closed = await query(server, f"SELECT closed_at FROM conversation WHERE cid = '{cid}'")
        assert closed == [(None,)], "the close was rolled back with its entry"

        status, _ = await post_as(
            server,
            "/admin/logout",
            operator_headers(token, token_csrf, "192.0.2.99"),
            {"csrf_token": token_csrf},
        )
        assert status == 303
        status, _, answer = await get_as(server, "/admin/audit", operator_headers(token))
        assert status == 303 and answer["Location"] == "/admin", "signed out all the same"
        assert "audit entry not stored: action=signout" in server.log()
    finally:
        await execute_sql(
            server,
            "DROP TRIGGER audit_refuse"
            if sqlite
            else "DROP TRIGGER audit_refuse ON audit_entry; DROP FUNCTION audit_refuse()",
        )
    assert await entries(server, f"target = '{cid}'") == []
