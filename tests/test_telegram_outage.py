"""A Telegram outage of several minutes (simulated time) while visitors keep chatting.

The app runs in this process on real Hypercorn with a manual clock, so the outbox worker's
backoff plays out over simulated minutes in a second of real time. Waits move the clock until
what they wait for has happened (however long the product's backoff), bounded only by a
generous real-time limit for a loaded machine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiohttp

from tests.support.clients import (
    ADMIN_COOKIE,
    Peer,
    admin_peer,
    client_id,
    start_visitor,
    visitor_peer,
)
from tests.support.fake_telegram import FakeTelegram
from tests.support.inprocess import InProcessServer, ManualClock
from tests.support.telegram import login_via_telegram, telegram_env, visitor_with_chat, with_text

PER_VISITOR = 15
REAL_LIMIT = 90.0


async def advance_until(clock: ManualClock, done: Callable[[], bool], step: float) -> None:
    """Move simulated time on by `step` until `done()`; fail after REAL_LIMIT real seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + REAL_LIMIT
    while not done():
        assert loop.time() < deadline, "still not done after minutes of simulated time"
        clock.advance(step)
        await asyncio.sleep(0.02)


async def reply_reaches(clock: ManualClock, peer: Peer, text: str, step: float) -> None:
    """The operator's reply written in Telegram reaches the visitor's page, in simulated time."""
    await advance_until(
        clock, lambda: any(m["role"] == "admin" for m in peer.events["chat:message"]), step
    )
    got = await peer.wait_for("chat:message", lambda m: m["role"] == "admin")
    assert got["text"] == text


async def test_outage_of_minutes_then_everything_once_in_order(tmp_path: Path) -> None:
    clock = ManualClock()
    async with FakeTelegram() as fake:
        env = telegram_env(fake, TELEGRAM_MAX_BACKOFF="300")
        server = await InProcessServer(tmp_path, env, clock).start()
        visitors = []
        try:
            fake.outage(True)
            for name in ("Deniz", "Ece", "Fırat"):
                token, cid = await start_visitor(server.url, name)
                visitors.append((await visitor_peer(server.url, token), cid))

            async def chat(peer, cid: str) -> None:  # type: ignore[no-untyped-def]
                for n in range(PER_VISITOR):
                    ack = await peer.call(
                        "send", {"chat_id": cid, "text": f"{cid} #{n}", "client_id": client_id()}
                    )
                    assert ack["ok"], ack  # the chat goes on while Telegram is down
                    clock.advance(12)  # ~3 simulated minutes over the conversation

            await asyncio.gather(*[chat(peer, cid) for peer, cid in visitors])
            for _ in range(20):  # and two more simulated minutes of outage
                clock.advance(6)
                await asyncio.sleep(0.02)
            failed_calls = len([c for c in fake.calls("sendMessage") if c.status != 200])
            assert failed_calls >= 3, "the worker kept trying during the outage"
            assert not [m for m in fake.sent() if "#" in (m.text or "")]

            fake.outage(False)
            expected = PER_VISITOR * len(visitors)
            await advance_until(
                clock,
                lambda: len([m for m in fake.sent() if "#" in (m.text or "")]) >= expected,
                30,
            )
            await asyncio.sleep(0.5)  # room for a wrong extra send to show up
            for _, cid in visitors:
                texts = [m.text or "" for m in fake.sent() if f"[CID: {cid}]" in (m.text or "")]
                lines = [t.splitlines()[-1] for t in texts if "#" in t]
                assert lines == [f"{cid} #{n}" for n in range(PER_VISITOR)], "each once, in order"
                assert sum("chat'e girdi" in t for t in texts) == 1
            print(
                f"\n{failed_calls} failed sends during the outage; {expected} messages delivered once, in order"
            )
        finally:
            for peer, _ in visitors:
                await peer.close()
            await server.stop()


async def test_polling_starts_even_if_telegram_was_down_at_start(tmp_path: Path) -> None:
    clock = ManualClock()
    async with FakeTelegram() as fake:
        fake.outage(True)
        server = await InProcessServer(tmp_path, telegram_env(fake), clock).start()
        try:
            token, cid = await start_visitor(server.url, "Erken")
            peer = await visitor_peer(server.url, token)
            await peer.call("join", {"chat_id": cid})
            for _ in range(20):  # a few simulated minutes of outage at start-up
                clock.advance(15)
                await asyncio.sleep(0.02)
            fake.outage(False)
            # The outbox and the poller come back by themselves (a poll that got an answer).
            await advance_until(
                clock,
                lambda: (
                    any(with_text(f"[CID: {cid}]")(m) for m in fake.sent())
                    and any(c.status == 200 for c in fake.calls("getUpdates"))
                ),
                30,
            )
            notice = next(m for m in fake.sent() if with_text(f"[CID: {cid}]")(m))
            await fake.admin_text("Geç de olsa merhaba", reply_to=notice)
            await reply_reaches(clock, peer, "Geç de olsa merhaba", 5)
            await peer.close()
        finally:
            await server.stop()


async def test_topics_come_on_when_the_admin_chat_answers_after_a_down_start(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    async with FakeTelegram(forum=True) as fake:
        fake.fail_next("getChat", "502_html", count=10_000)
        env = telegram_env(fake, TELEGRAM_TOPICS="auto")
        server = await InProcessServer(tmp_path, env, clock).start()
        try:
            await advance_until(clock, lambda: len(fake.calls("getChat")) >= 2, 1)
            token, cid = await start_visitor(server.url, "Erken")
            peer = await visitor_peer(server.url, token)
            await peer.call("join", {"chat_id": cid})
            # Meanwhile the conversation is shown in the chat itself, tagged with its CID.
            await advance_until(
                clock, lambda: any(with_text(f"[CID: {cid}]")(m) for m in fake.sent()), 1
            )

            fake.heal("getChat")

            def topic() -> int | None:
                made = [t for t in fake.topics.values() if cid in t["name"]]
                return made[0]["message_thread_id"] if made else None

            def card_in_topic() -> bool:
                thread = topic()
                return thread is not None and any(
                    "chat'e girdi" in (m.text or "") for m in fake.sent(thread_id=thread)
                )

            await advance_until(clock, card_in_topic, 5)
            thread = topic()
            assert thread is not None
            await peer.call(
                "send", {"chat_id": cid, "text": "Konuda mı?", "client_id": client_id()}
            )
            await advance_until(
                clock,
                lambda: any(with_text("Konuda mı?")(m) for m in fake.sent(thread_id=thread)),
                1,
            )
            await fake.admin_text("Evet, konuda", thread_id=thread)
            await reply_reaches(clock, peer, "Evet, konuda", 1)
            await peer.close()
        finally:
            await server.stop()


async def panel_page(server: InProcessServer, token: str) -> str:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.get(
            server.url + "/admin", headers={"Cookie": f"{ADMIN_COOKIE}={token}"}
        ) as r:
            assert r.status == 200
            return await r.text()


async def test_the_panel_shows_a_late_backlog_until_it_drains(tmp_path: Path) -> None:
    clock = ManualClock()
    async with FakeTelegram() as fake:
        server = await InProcessServer(tmp_path, telegram_env(fake), clock).start()
        try:
            token = await login_via_telegram(server, fake)
            panel = await admin_peer(server.url, token)
            fake.outage(True)
            visitor, cid = await visitor_with_chat(server, "Gecikme")
            ack = await visitor.call(
                "send", {"chat_id": cid, "text": "bekleyen", "client_id": client_id()}
            )
            assert ack["ok"]
            alerts = panel.events["admin:alert"]
            # Over a minute behind: a banner in every open panel, and in a panel opened now.
            await advance_until(clock, lambda: any("gecikiyor" in a["html"] for a in alerts), 10)
            banner = next(a["html"] for a in alerts if "gecikiyor" in a["html"])
            assert "2 mesaj bekliyor" in banner, banner  # the notice and the message
            assert "gecikiyor" in await panel_page(server, token)

            fake.outage(False)
            await advance_until(
                clock, lambda: bool(alerts) and "gecikiyor" not in alerts[-1]["html"], 5
            )
            assert 'id="telegram-alert" hidden' in alerts[-1]["html"]
            assert any(with_text("bekleyen")(m) for m in fake.sent())
            page = await panel_page(server, token)
            assert "gecikiyor" not in page and 'id="telegram-alert" hidden' in page
            await visitor.close()
            await panel.close()
        finally:
            await server.stop()
