"""Test & Repair against the real server (SQLite and PostgreSQL), without Telegram.

The checks run for real: the Web check calls the server's /health, the Socket check connects a
Socket.IO client to the server itself. Schedules are validated; repair is safe twice in a row.
"""

from __future__ import annotations

import re
import secrets

import pytest

from tests.support.clients import admin_csrf, admin_peer, call, jarless
from tests.support.server import Server, execute_sql, query

# Calls run in tests/test_calls.py (a private network namespace); here they are skipped.
CHECKS = ["web", "socket", "database", "telegram", "storage", "scheduler", "calls"]
SERVER_ENV = {"SELFTEST_HISTORY": "5"}


@pytest.fixture(scope="module")
async def csrf(server: Server, admin_token: str) -> str:
    return await admin_csrf(server.url, admin_token)


@pytest.fixture(scope="module")
def headers(admin_token: str, csrf: str) -> dict[str, str]:
    return {"Cookie": f"sohbet_admin={admin_token}", "X-CSRF-Token": csrf}


async def test_every_check_passes_against_the_real_server(
    server: Server, admin_token: str, headers: dict[str, str]
) -> None:
    panel = await admin_peer(server.url, admin_token)
    try:
        status, report = await call(server, "POST", "/api/test/run", headers)
    finally:
        await panel.close()
    assert status == 200, report
    by_name = {c["name"]: c for c in report["checks"]}
    assert list(by_name) == CHECKS
    for name in ("web", "socket", "database", "storage", "scheduler"):
        assert by_name[name]["status"] == "pass", by_name[name]
    assert by_name["telegram"]["status"] == "off", "no Telegram settings: off, not passed"
    assert report["ok"] is True
    # Turkish by default: labels, and the details (stored in the operator's language).
    assert report["summary"] == (
        "✅ Web, ✅ Soket, ✅ Veritabanı, ⚪ Telegram, ✅ Depolama, ✅ Zamanlayıcı, ⚪ Aramalar"
    )
    assert by_name["calls"]["detail"] == "Atlandı (SELFTEST_SKIP)"
    assert by_name["web"]["detail"] == f"{server.url}/health adresinden HTTP 200"
    assert re.match(
        r"İki soket \d+ ms'de bağlandı; mesaj \d+ ms'de onaylandı, \d+ ms'de diğer sokete iletildi",
        by_name["socket"]["detail"],
    )
    dialect = "sqlite" if server.database_url.startswith("sqlite") else "postgres"
    assert by_name["database"]["detail"].startswith(dialect)
    assert by_name["telegram"]["detail"] == "Ayarlanmamış (TELEGRAM_BOT_TOKEN boş)"
    assert all(isinstance(c["ms"], int) and c["ms"] >= 0 for c in report["checks"])
    print("\ncheck timings (ms):", {c["name"]: c["ms"] for c in report["checks"]}, report["ms"])

    # The synthetic conversation is gone, and the operator never saw it.
    assert await query(server, "SELECT COUNT(*) FROM conversation WHERE synthetic") == [(0,)]
    assert await query(server, "SELECT COUNT(*) FROM message") == [(0,)]
    assert not panel.events["admin:conversation"]
    assert not panel.events["admin:removed"]


async def test_labels_follow_the_language(server: Server, headers: dict[str, str]) -> None:
    status, report = await call(
        server, "POST", "/api/test/run", {**headers, "Accept-Language": "en"}
    )
    assert status == 200
    assert report["summary"] == (
        "✅ Web, ✅ Socket, ✅ Database, ⚪ Telegram, ✅ Storage, ✅ Scheduler, ⚪ Calls"
    )
    # Details are stored once, in the operator's language (DEFAULT_LOCALE).
    assert report["checks"][1]["detail"].endswith("ms'de diğer sokete iletildi")


async def test_history_keeps_the_runs(server: Server, headers: dict[str, str]) -> None:
    _, first = await call(server, "POST", "/api/test/run", headers)
    _, second = await call(server, "POST", "/api/test/run", headers)
    status, history = await call(server, "GET", "/api/test/runs", headers)
    assert status == 200
    ids = [run["id"] for run in history["runs"]]
    assert ids[:2] == [second["id"], first["id"]], "newest first"
    assert history["runs"][0]["checks"] == second["checks"]
    assert history["runs"][0]["trigger"] == "api"


async def test_history_keeps_the_last_n(server: Server, headers: dict[str, str]) -> None:
    for _ in range(6):
        await call(server, "POST", "/api/test/run", headers)
    _, history = await call(server, "GET", "/api/test/runs", headers)
    assert len(history["runs"]) == 5, "SELFTEST_HISTORY=5"
    assert await query(server, "SELECT COUNT(*) FROM selftest_run") == [(5,)]


async def test_only_the_operator_gets_in(server: Server, headers: dict[str, str]) -> None:
    async with jarless() as http:
        async with http.get(server.url + "/test", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/admin"
        async with http.post(
            server.url + "/test/run", headers={"HX-Request": "true"}, allow_redirects=False
        ) as r:
            assert r.status == 401 and r.headers["HX-Redirect"] == "/admin"
    for method, path in [
        ("POST", "/api/test/run"),
        ("POST", "/api/repair/run"),
        ("GET", "/api/test/schedule"),
        ("POST", "/api/test/schedule"),
        ("PUT", "/api/test/schedule/1"),
        ("DELETE", "/api/test/schedule/1"),
        ("GET", "/api/test/runs"),
    ]:
        status, body = await call(server, method, path, {}, {"time_hhmm": "09:00"})
        assert status == 401 and body["error"] == "unauthorized", (method, path, body)
    # Signed in, but without the CSRF header: every write is refused.
    cookie_only = {"Cookie": headers["Cookie"]}
    for method, path in [
        ("POST", "/api/test/run"),
        ("POST", "/api/repair/run"),
        ("POST", "/api/test/schedule"),
        ("PUT", "/api/test/schedule/1"),
        ("DELETE", "/api/test/schedule/1"),
    ]:
        status, body = await call(server, method, path, cookie_only, {"time_hhmm": "09:00"})
        assert status == 403 and body["error"] == "csrf", (method, path, body)
        status, body = await call(
            server, method, path, {**cookie_only, "X-CSRF-Token": "forged"}, {"time_hhmm": "09:00"}
        )
        assert status == 403, (method, path, body)
    status, _ = await call(server, "GET", "/api/test/schedule", cookie_only)
    assert status == 200, "reading needs no token"


async def test_schedule_crud(server: Server, headers: dict[str, str]) -> None:
    status, made = await call(
        server, "POST", "/api/test/schedule", headers, {"time_hhmm": "09:30", "tz": "Asia/Tokyo"}
    )
    assert status == 201, made
    assert made["time_hhmm"] == "09:30" and made["tz"] == "Asia/Tokyo" and made["enabled"]
    assert made["next_run"].endswith(":30:00Z"), "09:30 in Tokyo is 00:30 UTC"
    sid = made["id"]

    status, listed = await call(server, "GET", "/api/test/schedule", headers)
    assert made in listed["schedules"]

    status, changed = await call(
        server, "PUT", f"/api/test/schedule/{sid}", headers, {"time_hhmm": "23:59"}
    )
    assert status == 200 and changed["time_hhmm"] == "23:59" and changed["tz"] == "Asia/Tokyo"
    assert changed["next_run"].endswith("14:59:00Z")

    _, run = await call(server, "POST", "/api/test/run", headers)
    scheduler = next(c for c in run["checks"] if c["name"] == "scheduler")
    assert scheduler["status"] == "pass" and "sonraki çalıştırma" in scheduler["detail"]

    status, off = await call(
        server, "PUT", f"/api/test/schedule/{sid}", headers, {"enabled": False}
    )
    assert status == 200 and off["enabled"] is False and off["next_run"] is None

    status, _ = await call(server, "DELETE", f"/api/test/schedule/{sid}", headers)
    assert status == 204
    for method in ("PUT", "DELETE"):
        status, body = await call(
            server, method, f"/api/test/schedule/{sid}", headers, {"enabled": True}
        )
        assert status == 404 and body["error"] == "not_found", body
    status, _ = await call(server, "PUT", "/api/test/schedule/99999999999999999999", headers, {})
    assert status == 404
    status, listed = await call(server, "GET", "/api/test/schedule", headers)
    assert sid not in [s["id"] for s in listed["schedules"]]

    # tz defaults to the server's TZ, enabled to true.
    status, made = await call(server, "POST", "/api/test/schedule", headers, {"time_hhmm": "00:00"})
    assert status == 201 and made["tz"] == "Europe/Istanbul" and made["enabled"] is True
    await call(server, "DELETE", f"/api/test/schedule/{made['id']}", headers)


@pytest.mark.parametrize(
    ("body", "error", "field"),
    [
        ({"time_hhmm": "24:00"}, "bad_time", "time_hhmm"),
        ({"time_hhmm": "12:60"}, "bad_time", "time_hhmm"),
        ({"time_hhmm": "9:00"}, "bad_time", "time_hhmm"),
        ({"time_hhmm": "09:00:00"}, "bad_time", "time_hhmm"),
        ({"time_hhmm": "０９:００"}, "bad_time", "time_hhmm"),
        ({"time_hhmm": 900}, "bad_time", "time_hhmm"),
        ({"time_hhmm": None}, "bad_time", "time_hhmm"),
        ({"tz": "UTC"}, "missing", "time_hhmm"),
        ({"time_hhmm": "09:00", "tz": "Mars/Olympus_Mons"}, "bad_tz", "tz"),
        ({"time_hhmm": "09:00", "tz": "../../etc/passwd"}, "bad_tz", "tz"),
        ({"time_hhmm": "09:00", "tz": "europe/istanbul"}, "bad_tz", "tz"),
        ({"time_hhmm": "09:00", "tz": 3}, "bad_tz", "tz"),
        ({"time_hhmm": "09:00", "tz": ""}, "bad_tz", "tz"),
        ({"time_hhmm": "09:00", "enabled": "yes"}, "bad_enabled", "enabled"),
        ({"time_hhmm": "09:00", "enabled": 1}, "bad_enabled", "enabled"),
        ({"time_hhmm": "09:00", "when": "daily"}, "unknown_field", "when"),
        (["09:00"], "bad_json", None),
        ("09:00", "bad_json", None),
    ],
)
async def test_schedule_refuses_bad_input(
    server: Server, headers: dict[str, str], body: object, error: str, field: str | None
) -> None:
    status, answer = await call(server, "POST", "/api/test/schedule", headers, body)
    assert status == 400, answer
    assert answer["error"] == error and answer["field"] == field
    assert answer["message"]


async def test_schedule_update_refuses_bad_input(server: Server, headers: dict[str, str]) -> None:
    _, made = await call(server, "POST", "/api/test/schedule", headers, {"time_hhmm": "06:00"})
    path = f"/api/test/schedule/{made['id']}"
    for body, error in [
        ({}, "empty"),
        ({"time_hhmm": "6:00"}, "bad_time"),
        ({"tz": "Nowhere/City"}, "bad_tz"),
        ({"enabled": "false"}, "bad_enabled"),
        ({"id": 5}, "unknown_field"),
        (None, "bad_json"),
    ]:
        status, answer = await call(server, "PUT", path, headers, body)
        assert status == 400 and answer["error"] == error, (body, answer)
    async with jarless() as http:
        async with http.put(
            server.url + path,
            data=b"{not json",
            headers={**headers, "Content-Type": "application/json"},
        ) as r:
            assert r.status == 400 and (await r.json())["error"] == "bad_json"
    _, unchanged = await call(server, "GET", "/api/test/schedule", headers)
    assert {
        "id": made["id"],
        "time_hhmm": "06:00",
        "tz": "Europe/Istanbul",
        "enabled": True,
    }.items() <= next(s for s in unchanged["schedules"] if s["id"] == made["id"]).items()
    await call(server, "DELETE", path, headers)


async def test_repair_cleans_up_and_is_safe_twice(server: Server, headers: dict[str, str]) -> None:
    old = "'2000-01-01 00:00:00+00:00'"
    token = secrets.token_hex(32)
    await execute_sql(
        server,
        "INSERT INTO admin_session (token_hash, csrf_token, created_at, expires_at) "
        f"VALUES ('{token}', 'x', {old}, {old})",
    )
    await execute_sql(
        server,
        "INSERT INTO login_code (challenge_hash, code_hash, created_at, expires_at) "
        f"VALUES ('{token}', 'x', {old}, {old})",
    )
    await execute_sql(
        server,
        "INSERT INTO conversation (cid, visitor_name, token_hash, created_at, synthetic) "
        f"VALUES ('Selftest-{token[:4]}', 'Selftest', '{token}', {old}, TRUE)",
    )
    status, first = await call(server, "POST", "/api/repair/run", headers)
    assert status == 200, first
    assert first["counts"]["sessions"] == 1
    assert first["counts"]["login_codes"] == 1
    assert first["counts"]["synthetic"] == 1
    assert first["counts"]["integrity"] == 0 and first["ok"] is True
    assert [s["name"] for s in first["steps"]] == [
        "presence", "calls", "login_codes", "sessions", "outbox", "synthetic", "orphan_media",
        "integrity",
    ]  # fmt: skip
    status, second = await call(server, "POST", "/api/repair/run", headers)
    assert status == 200 and second["ok"] is True
    assert second["counts"] == dict.fromkeys(first["counts"], 0), second
    # The operator's own session and what the hourly code limit counts are kept.
    status, _ = await call(server, "GET", "/api/test/schedule", headers)
    assert status == 200
    assert await query(server, "SELECT COUNT(*) FROM login_code") != [(0,)]


async def test_readiness_covers_the_database(server: Server) -> None:
    async with jarless() as http:
        async with http.get(server.url + "/health/ready") as r:
            assert r.status == 200 and await r.json() == {"status": "ok", "database": "ok"}
        async with http.get(server.url + "/health") as r:
            assert r.status == 200 and await r.json() == {"status": "ok"}


async def test_the_page_with_htmx(server: Server, headers: dict[str, str], csrf: str) -> None:
    page_headers = {"Cookie": headers["Cookie"]}
    hx = {**headers, "HX-Request": "true"}
    async with jarless() as http:
        async with http.get(server.url + "/test", headers=page_headers) as r:
            assert r.status == 200
            page = await r.text()
        assert f'"X-CSRF-Token": "{csrf}"' in page
        assert "Tüm testleri çalıştır" in page and ">Onar<" in page
        assert 'id="test-report"' in page and 'id="test-schedule"' in page
        assert '<option value="Europe/Istanbul">' in page

        async with http.post(server.url + "/test/run", headers=hx) as r:
            assert r.status == 200
            fragment = await r.text()
        assert fragment.startswith('<div class="report" id="test-report"')
        assert re.findall(r'data-check="(\w+)" data-status="(\w+)"', fragment) == [
            ("web", "pass"), ("socket", "pass"), ("database", "pass"), ("telegram", "off"),
            ("storage", "pass"), ("scheduler", "pass"), ("calls", "off"),
        ]  # fmt: skip
        assert 'id="test-history" hx-swap-oob="true"' in fragment
        assert "✅ Web, ✅ Soket, ✅ Veritabanı" in fragment

        async with http.post(server.url + "/test/repair", headers=hx) as r:
            assert r.status == 200
            assert 'data-step="integrity" data-count="0"' in await r.text()

        async with http.post(
            server.url + "/test/run", headers={**page_headers, "HX-Request": "true"}
        ) as r:
            assert r.status == 403, "no CSRF header, no run"

        form = {"time_hhmm": "07:15", "tz": "Europe/Berlin", "enabled": "on"}
        async with http.post(server.url + "/test/schedule", headers=hx, data=form) as r:
            assert r.status == 200
            listing = await r.text()
        row_id = re.search(r'id="schedule-(\d+)"', listing)
        assert row_id and 'value="07:15"' in listing and "Sonraki çalıştırma" in listing
        sid = row_id.group(1)

        bad = {"time_hhmm": "25:00", "tz": "Europe/Berlin"}
        async with http.post(server.url + "/test/schedule", headers=hx, data=bad) as r:
            assert r.status == 400
            listing = await r.text()
        assert "00:00 ile 23:59 arasında" in listing and 'value="25:00"' in listing

        change = {"time_hhmm": "08:45", "tz": "Europe/Berlin"}  # the box unticked: disabled
        async with http.put(server.url + f"/test/schedule/{sid}", headers=hx, data=change) as r:
            assert r.status == 200
            row = await r.text()
        assert row.startswith(f'<li class="schedule__row" id="schedule-{sid}"')
        assert 'value="08:45"' in row and "checked" not in row and ">Kapalı<" in row
        bad_zone = {"time_hhmm": "08:45", "tz": "Berlin", "enabled": "on"}
        async with http.put(server.url + f"/test/schedule/{sid}", headers=hx, data=bad_zone) as r:
            assert r.status == 400
            assert "Saat dilimi, Europe/Istanbul gibi bir IANA adı olmalı." in await r.text()

        async with http.delete(server.url + f"/test/schedule/{sid}", headers=hx) as r:
            assert r.status == 200 and await r.text() == ""
    _, listed = await call(server, "GET", "/api/test/schedule", headers)
    assert int(sid) not in [s["id"] for s in listed["schedules"]]
