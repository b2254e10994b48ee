"""The README's quick start keeps working with operators: the first start makes the owner from
ADMIN_PASSWORD, the password alone signs in (no name to pick while there is one operator),
and what was there before operators (an open session) becomes the owner's."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from app.core.security import token_hash
from tests.support.clients import ADMIN_COOKIE, admin_login, jarless, page_with
from tests.support.server import ADMIN_PASSWORD, Server, execute_sql, query


async def test_owner_from_admin_password_and_password_only_sign_in(tmp_path: Path) -> None:
    server = Server(database_url=f"sqlite://{tmp_path / 'sohbet.db'}", workdir=tmp_path)
    await server.start()
    try:
        assert await query(server, "SELECT name, role, active, telegram_user_id FROM operator") == [
            ("Destek", "owner", 1, None)
        ]
        async with jarless() as http, http.get(server.url + "/admin") as r:
            page = await r.text()
        assert 'name="password"' in page and 'name="name"' not in page
        token = await admin_login(server)
        panel = await page_with(server.url + "/admin", ADMIN_COOKIE, token)
        assert 'id="conversation-list"' in panel and 'id="team-link"' in panel
        # A session from before operators existed (no operator on its row).
        old = "session-from-before-operators"
        later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
        await execute_sql(
            server,
            "INSERT INTO admin_session (token_hash, csrf_token, created_at, expires_at) "
            f"VALUES ('{token_hash(old)}', 'csrf', '{later}+00:00', '{later}+00:00')",
        )
    finally:
        await asyncio.to_thread(server.stop)
    # Restarted with another ADMIN_PASSWORD: still one owner, whose password it now is, and
    # the old session is theirs.
    server.env_extra = {"ADMIN_PASSWORD": "a new admin password"}
    await server.start()
    try:
        assert await query(server, "SELECT COUNT(*) FROM operator") == [(1,)]
        owner = (await query(server, "SELECT id FROM operator"))[0][0]
        rows = await query(
            server, f"SELECT operator_id FROM admin_session WHERE token_hash = '{token_hash(old)}'"
        )
        assert rows == [(owner,)]
        assert 'id="conversation-list"' in await page_with(server.url + "/admin", ADMIN_COOKIE, old)
        async with jarless() as http:
            async with http.post(
                server.url + "/admin/login",
                data={"password": ADMIN_PASSWORD},
                allow_redirects=False,
            ) as r:
                assert r.status == 400
            async with http.post(
                server.url + "/admin/login",
                data={"password": "a new admin password"},
                allow_redirects=False,
            ) as r:
                assert r.status == 303
    finally:
        await asyncio.to_thread(server.stop)
