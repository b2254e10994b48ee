"""Operators: invitations, Telegram linking, each operator's own sign-in code, limits per
operator and per address, and deactivation ending sessions and live sockets.

A real server with its bot on the fake Bot API; each operator is a Telegram user of their own
there, and the owner is the admin chat's user (made from ADMIN_PASSWORD at start-up).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from datetime import UTC, datetime, timedelta

import pytest
import socketio

from app.admin.auth import OPERATOR_PASSWORD_TRIES
from tests.support.clients import ADMIN_COOKIE, Peer, admin_peer, jarless
from tests.support.fake_telegram import FakeTelegram
from tests.support.server import ADMIN_PASSWORD, Server, execute_sql, query
from tests.support.team import (
    OWNER,
    accept_invite,
    admin_headers,
    ask_code_as,
    code_for,
    create_invite,
    get,
    join_team,
    link_command,
    link_telegram,
    next_in_chat,
    owner_token,
    redeem,
    set_active,
    setup_page,
    sign_in_telegram,
    team_csrf,
    tg_user,
    watch_disconnect,
)

# Test clients say where they are through a proxy header, so limits per address can be seen.
TELEGRAM_ENV = {"TRUSTED_PROXIES": "127.0.0.1"}
PASSWORD = "sifre-1234-uzun"


@pytest.fixture(scope="module")
async def owner(tg_server: Server, fake: FakeTelegram) -> str:
    """The owner's session: made from ADMIN_PASSWORD, signed in by name with the code sent to
    the admin's private chat."""
    return await owner_token(tg_server, fake)


def forwarded(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


async def operator_id(server: Server, name: str) -> int:
    rows = await query(server, f"SELECT id FROM operator WHERE name = '{name}'")
    assert len(rows) == 1, rows
    return int(rows[0][0])


async def test_invite_link_telegram_and_sign_in_with_own_code(
    tg_server: Server, fake: FakeTelegram, owner: str
) -> None:
    ayse = tg_user(7770001, "Ayşe")
    link = await create_invite(tg_server, owner)
    assert link.startswith(tg_server.url + "/admin/invite/")
    status, setup, page = await accept_invite(link, "Ayşe", PASSWORD)
    assert status == 303 and setup, page
    # Until she sends the code, the setup page waits (and polls).
    status_line = await setup_page(tg_server, setup, "/admin/invite/setup/status")
    assert 'data-linked="0"' in status_line
    answer = await link_telegram(tg_server, fake, setup, ayse)
    assert "Ayşe" in (answer.text or "") and "bağlandı" in (answer.text or "")
    assert 'data-linked="1"' in await setup_page(tg_server, setup, "/admin/invite/setup/status")
    assert await query(
        tg_server, "SELECT role, telegram_user_id, active FROM operator WHERE name = 'Ayşe'"
    ) == [("operator", 7770001, 1)]

    # She signs in with any case of her name; the code goes to her private chat only.
    in_admin_chat = len(fake.sent(chat_id=fake.admin_chat_id))
    token = await sign_in_telegram(tg_server, fake, "AYŞE", PASSWORD, ayse["id"])
    assert not [
        m
        for m in fake.sent(chat_id=fake.admin_chat_id)[in_admin_chat:]
        if "giriş" in (m.text or "")
    ]
    status, panel = await get(tg_server, "/admin", admin_headers(token))
    assert status == 200 and 'id="conversation-list"' in panel
    assert 'title="Ayşe"' in panel and 'id="team-link"' not in panel
    # The team page is the owner's.
    status, page = await get(tg_server, "/admin/team", admin_headers(token))
    assert status == 403 and "Yalnızca sahip" in page
    # Her socket knows her: it is in her own room (what deactivation closes).
    peer = await admin_peer(tg_server.url, token)
    try:
        assert peer.sio.connected
    finally:
        await peer.close()
    # The trail: the invitation by the owner, her joining and her link from Telegram.
    rows = await query(
        tg_server,
        "SELECT action, actor_name, target, surface FROM audit_entry "
        "WHERE action IN ('operator_join', 'telegram_link') AND target = 'Ayşe' ORDER BY id",
    )
    assert rows == [
        ("operator_join", "Ayşe", "Ayşe", "panel"),
        ("telegram_link", "Ayşe", "Ayşe", "telegram"),
    ]
    assert await query(
        tg_server, "SELECT actor_name FROM audit_entry WHERE action = 'operator_invite' LIMIT 1"
    ) == [(OWNER,)]
    # The owner's team page lists her with Telegram linked.
    status, page = await get(tg_server, "/admin/team", admin_headers(owner))
    assert status == 200 and "Ayşe" in page and "Telegram bağlı" in page


async def test_used_and_expired_invitations_change_nothing(
    tg_server: Server, fake: FakeTelegram, owner: str
) -> None:
    link = await create_invite(tg_server, owner)
    status, setup, _ = await accept_invite(link, "Burak", PASSWORD)
    assert status == 303 and setup
    before = await query(tg_server, "SELECT COUNT(*) FROM operator")
    status, page = await get(tg_server, link.removeprefix(tg_server.url), {})
    assert status == 409 and "zaten kullanılmış" in page
    status, setup, page = await accept_invite(link, "Cem", PASSWORD)
    assert status == 409 and setup is None and "zaten kullanılmış" in page
    assert await query(tg_server, "SELECT COUNT(*) FROM operator") == before

    link = await create_invite(tg_server, owner)
    token = link.rsplit("/", 1)[1]
    past = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S")
    digest = hashlib.sha256(token.encode()).hexdigest()
    await execute_sql(
        tg_server,
        f"UPDATE operator_invite SET expires_at = '{past}+00:00' WHERE token_hash = '{digest}'",
    )
    status, page = await get(tg_server, link.removeprefix(tg_server.url), {})
    assert status == 400 and "süresi dolmuş" in page
    status, setup, page = await accept_invite(link, "Cem", PASSWORD)
    assert status == 400 and setup is None and "süresi dolmuş" in page
    assert await query(tg_server, "SELECT COUNT(*) FROM operator") == before
    # The owner can revoke one nobody has used: its link then says it has expired.
    link = await create_invite(tg_server, owner)
    digest = hashlib.sha256(link.rsplit("/", 1)[1].encode()).hexdigest()
    status, page = await get(tg_server, "/admin/team", admin_headers(owner))
    assert f'id="invite-{digest[:12]}"' in page
    csrf = await team_csrf(tg_server, owner)
    async with (
        jarless() as http,
        http.post(
            tg_server.url + f"/admin/team/invites/{digest}/revoke",
            data={"csrf_token": csrf},
            headers=admin_headers(owner),
        ) as r,
    ):
        assert r.status == 200 and f'id="invite-{digest[:12]}"' not in await r.text()
    status, setup, page = await accept_invite(link, "Cem", PASSWORD)
    assert status == 400 and setup is None and "süresi dolmuş" in page
    assert await query(tg_server, "SELECT COUNT(*) FROM operator") == before
    # A made-up link is refused the same way.
    status, page = await get(tg_server, "/admin/invite/not-a-real-token", {})
    assert status == 400 and "geçerli değil" in page


async def test_taken_names_and_bad_passwords_leave_the_invitation_usable(
    tg_server: Server, fake: FakeTelegram, owner: str
) -> None:
    link = await create_invite(tg_server, owner)
    before = await query(tg_server, "SELECT COUNT(*) FROM operator")
    # The owner's name in other letters is the same name.
    status, setup, page = await accept_invite(link, OWNER.upper(), PASSWORD)
    assert status == 409 and setup is None and "zaten" in page and OWNER.upper() in page
    status, setup, page = await accept_invite(link, "Deniz", "kısa")
    assert status == 400 and setup is None
    status, setup, page = await accept_invite(link, "Deniz", PASSWORD, PASSWORD + "x")
    assert status == 400 and setup is None
    status, setup, page = await accept_invite(link, " ", PASSWORD)
    assert status == 400 and setup is None
    assert await query(tg_server, "SELECT COUNT(*) FROM operator") == before
    # The same invitation still works with a free name.
    status, setup, page = await accept_invite(link, "Deniz", PASSWORD)
    assert status == 303 and setup, page
    # A Telegram account is one operator's only.
    deniz = tg_user(7770004, "Deniz")
    assert "bağlandı" in ((await link_telegram(tg_server, fake, setup, deniz)).text or "")
    link = await create_invite(tg_server, owner)
    status, setup, _ = await accept_invite(link, "Ece", PASSWORD)
    assert status == 303 and setup
    answer = await link_telegram(tg_server, fake, setup, deniz)
    assert "zaten" in (answer.text or "") and "Deniz" in (answer.text or "")
    assert await query(tg_server, "SELECT telegram_user_id FROM operator WHERE name = 'Ece'") == [
        (None,)
    ]
    # A wrong code changes nothing either.
    stranger = tg_user(7770099, "Yabancı")
    await fake.private_command(stranger, "/link 00000000")
    answer = await next_in_chat(fake, stranger["id"], 0)
    assert "geçerli değil" in (answer.text or "")
    assert await query(tg_server, "SELECT id FROM operator WHERE telegram_user_id = 7770099") == []


async def test_code_and_password_limits_are_per_operator_and_per_address(
    tg_server: Server, fake: FakeTelegram, owner: str
) -> None:
    filiz = tg_user(7770005, "Filiz")
    await join_team(tg_server, fake, owner, "Filiz", PASSWORD, filiz)
    # Five codes an hour for Filiz, from anywhere; the owner still gets theirs.
    async with jarless() as http:
        statuses = []
        for n in range(6):
            status, _, page = await ask_code_as(
                http, tg_server, "Filiz", PASSWORD, forwarded(f"198.51.100.{n + 1}")
            )
            statuses.append(status)
        assert statuses == [303] * 5 + [429] and "60" in page
    await owner_token(tg_server, fake)

    # Thirty wrong passwords for Gül, each from another address: her right one is refused
    # next, while the owner signs in from one of those addresses.
    gul = tg_user(7770006, "Gül")
    await join_team(tg_server, fake, owner, "Gül", PASSWORD, gul)
    async with jarless() as http:
        for n in range(OPERATOR_PASSWORD_TRIES):
            status, _, _ = await ask_code_as(
                http, tg_server, "Gül", "yanlış-şifre", forwarded(f"203.0.113.{n + 1}")
            )
            assert status == 400
        status, challenge, page = await ask_code_as(
            http, tg_server, "Gül", PASSWORD, forwarded("203.0.113.200")
        )
        assert status == 429 and challenge is None and "dakika" in page
        seen = len(fake.sent(chat_id=fake.admin_chat_id))
        status, challenge, page = await ask_code_as(
            http, tg_server, OWNER, ADMIN_PASSWORD, forwarded("203.0.113.1")
        )
        assert status == 303 and challenge, page
        code = await code_for(fake, fake.admin_chat_id, seen)
        status, token, _ = await redeem(http, tg_server, challenge, code)
        assert status == 303 and token

    # One address: ten wrong passwords, then nobody signs in from there for a while.
    async with jarless() as http:
        for _ in range(10):
            status, _, _ = await ask_code_as(
                http, tg_server, "Filiz", "yanlış-şifre", forwarded("192.0.2.77")
            )
            assert status == 400
        status, challenge, _ = await ask_code_as(
            http, tg_server, OWNER, ADMIN_PASSWORD, forwarded("192.0.2.77")
        )
        assert status == 429 and challenge is None

    # An unknown name reads as a wrong password.
    async with jarless() as http:
        status, challenge, page = await ask_code_as(
            http, tg_server, "Kimse", PASSWORD, forwarded("192.0.2.10")
        )
        assert status == 400 and challenge is None and "Şifre yanlış" in page


async def test_deactivation_ends_sessions_sockets_and_codes(
    tg_server: Server, fake: FakeTelegram, owner: str
) -> None:
    hakan = tg_user(7770007, "Hakan")
    await join_team(tg_server, fake, owner, "Hakan", PASSWORD, hakan)
    token = await sign_in_telegram(tg_server, fake, "Hakan", PASSWORD, hakan["id"])
    chat = await admin_peer(tg_server.url, token)
    call = await Peer(tg_server.url, f"{ADMIN_COOKIE}={token}", "admin", "/call", ()).connect()
    chat_gone, call_gone = watch_disconnect(chat), watch_disconnect(call)
    # A code asked for before the deactivation...
    async with jarless() as http:
        seen = len(fake.sent(chat_id=hakan["id"]))
        status, challenge, _ = await ask_code_as(http, tg_server, "Hakan", PASSWORD)
        assert status == 303 and challenge
        code = await code_for(fake, hakan["id"], seen)
    hakan_id = await operator_id(tg_server, "Hakan")
    try:
        status, row = await set_active(tg_server, owner, hakan_id, False)
        assert status == 200 and 'data-active="0"' in row and "Yeniden etkinleştir" in row
        await asyncio.wait_for(asyncio.gather(chat_gone.wait(), call_gone.wait()), 10)
    finally:
        await chat.close()
        await call.close()
    # ...is refused, as is his cookie, with a message saying why.
    async with jarless() as http:
        status, got, page = await redeem(http, tg_server, challenge, code)
        assert status == 403 and got is None and "devre dışı" in page
    status, page = await get(tg_server, "/admin", admin_headers(token))
    assert status == 200 and "devre dışı" in page and 'id="conversation-list"' not in page
    status, page = await get(tg_server, "/admin/conversations", admin_headers(token))
    assert status == 303
    async with jarless() as http:
        status, _, page = await ask_code_as(http, tg_server, "Hakan", PASSWORD)
        assert status == 403 and "devre dışı" in page
    refused = Peer(tg_server.url, f"{ADMIN_COOKIE}={token}", "admin")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await refused.connect()
    # The owner cannot be deactivated (the team would have none).
    owner_id = await operator_id(tg_server, OWNER)
    status, page = await set_active(tg_server, owner, owner_id, False)
    assert status == 409 and "Sahip devre dışı bırakılamaz" in page
    # Reactivated, he signs in afresh; the old cookie stays dead.
    status, row = await set_active(tg_server, owner, hakan_id, True)
    assert status == 200 and 'data-active="1"' in row
    status, page = await get(tg_server, "/admin", admin_headers(token))
    assert 'id="conversation-list"' not in page and "devre dışı" not in page
    assert await query(
        tg_server,
        "SELECT action, actor_name FROM audit_entry WHERE target = 'Hakan' "
        "AND action IN ('operator_deactivate', 'operator_reactivate') ORDER BY id",
    ) == [("operator_deactivate", OWNER), ("operator_reactivate", OWNER)]
    fresh = await sign_in_telegram(tg_server, fake, "Hakan", PASSWORD, hakan["id"])
    status, page = await get(tg_server, "/admin", admin_headers(fresh))
    assert 'id="conversation-list"' in page


async def test_an_operator_moves_their_codes_to_another_telegram_account(
    tg_server: Server, fake: FakeTelegram, owner: str
) -> None:
    old, new = tg_user(7770010, "Jale"), tg_user(7770011, "Jale yeni")
    await join_team(tg_server, fake, owner, "Jale", PASSWORD, old)
    token = await sign_in_telegram(tg_server, fake, "Jale", PASSWORD, old["id"])
    status, page = await get(tg_server, "/admin/security", admin_headers(token))
    assert status == 200 and 'data-linked="1"' in page
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf
    async with (
        jarless() as http,
        http.post(
            tg_server.url + "/admin/telegram/link",
            headers=admin_headers(token, csrf.group(1), htmx=True),
        ) as r,
    ):
        box = await r.text()
    assert r.status == 200
    await fake.private_command(new, link_command(box))
    assert "bağlandı" in ((await next_in_chat(fake, new["id"], 0)).text or "")
    assert await query(tg_server, "SELECT telegram_user_id FROM operator WHERE name = 'Jale'") == [
        (new["id"],)
    ]
    before = len(fake.sent(chat_id=old["id"]))
    await sign_in_telegram(tg_server, fake, "Jale", PASSWORD, new["id"])
    assert len(fake.sent(chat_id=old["id"])) == before


async def test_without_telegram_or_an_app_an_operator_is_told_to_ask_the_owner(
    tg_server: Server, owner: str
) -> None:
    status, setup, page = await accept_invite(
        await create_invite(tg_server, owner), "Kaan", PASSWORD
    )
    assert status == 303 and setup, page
    # Kaan never sent the bot his code: no code can reach him, and none is made.
    async with jarless() as http:
        status, challenge, page = await ask_code_as(http, tg_server, "Kaan", PASSWORD)
    assert status == 400 and challenge is None and "Telegram hesabınız bağlı değil" in page
    kaan = await operator_id(tg_server, "Kaan")
    assert await query(
        tg_server, f"SELECT COUNT(*) FROM login_code WHERE operator_id = {kaan}"
    ) == [(0,)]
