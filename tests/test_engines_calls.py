"""A call from Firefox: the visitor rings from firefox-esr, the operator (a real aiortc peer on
its `/call` socket) answers, and each hears the other's tone.

Like tests/test_calls.py this runs in a private network namespace. Firefox gathers no ICE
candidates where there is no default route, and none on a loopback interface: the namespace gets
a veth pair with an address and a default route (leading nowhere).
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support import netns
from tests.support.calls import Media, call_peer
from tests.support.clients import admin_login
from tests.support.engines import FirefoxPage, firefox, firefox_missing, wait_js
from tests.support.server import Server

pytestmark = pytest.mark.browser

ADMIN_HZ = 660.0
FIREFOX_NET = "10.99.0"
# Firefox's fake microphone (media.navigator.streams.fake) plays a 1 kHz sine.
FIREFOX_FAKE_HZ = 1000.0
RECEIVES = """const el = document.getElementById("call-remote-audio");
const track = el.srcObject && el.srcObject.getAudioTracks()[0];
return !!track && track.readyState === "live" && !track.muted;"""


@pytest.fixture(scope="module")
def private_net() -> Iterator[str]:
    if (why := netns.unavailable()) is not None:
        pytest.skip(why)
    if (why := firefox_missing()) is not None:
        pytest.skip(why)
    with netns.private_network() as address:
        # Firefox offers no loopback candidates: a veth pair gives it an interface of its own,
        # and a default route through it.
        for cmd in (
            "link add sohbet0 type veth peer name sohbet1",
            f"addr add {FIREFOX_NET}.1/24 dev sohbet0",
            "link set sohbet0 up",
            "link set sohbet1 up",
            f"route add default via {FIREFOX_NET}.2 dev sohbet0",
        ):
            subprocess.run(["ip", *cmd.split()], check=True)
        yield address


@pytest.fixture(scope="module")
async def server(
    private_net: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Server]:
    with netns.own_default_executor(), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stun:
        stun.bind((private_net, 0))  # a STUN server that never answers
        workdir = tmp_path_factory.mktemp("engine-calls")
        srv = Server(
            database_url=f"sqlite://{workdir / 'sohbet.db'}",
            workdir=workdir,
            env_extra={"ICE_SERVERS": f"stun:{private_net}:{stun.getsockname()[1]}"},
        )
        await srv.start()
        yield srv
        srv.stop()


async def test_firefox_visitor_calls_the_operator(server: Server) -> None:
    operator = await call_peer(server.url, "admin", await admin_login(server))
    media: Media | None = None
    async with firefox() as driver:
        page: FirefoxPage = await driver.new_page(390, 844)
        try:
            await page.goto(server.url + "/")
            await page.type("#visitor-name", "Tilki")
            await page.click("#start-form button[type=submit]")
            cid = await wait_js(
                page,
                "const c = document.querySelector('#conversation[data-chat-id]');"
                " return c && c.dataset.chatId",
            )
            await wait_js(page, "return !document.querySelector('#call-button').disabled")
            await page.click("#call-button")
            incoming = await operator.wait_for("call:incoming", lambda m: m["chat_id"] == cid)
            call_id = incoming["call_id"]
            assert incoming["name"] == "Tilki"
            accepted = await operator.call("call:accept", {"call_id": call_id})
            assert accepted["ok"], accepted
            media = Media(operator, call_id, ADMIN_HZ, FIREFOX_FAKE_HZ)
            await media.answer()  # Firefox, the caller, offers
            await wait_js(page, "return document.getElementById('call').dataset.state === 'active'")
            assert await page.js("return document.getElementById('call').dataset.mode") == "p2p"
            await media.hear(timeout=15)  # the operator hears Firefox's microphone
            # The operator's audio reaches Firefox: its remote track unmutes when RTP arrives
            # (headless Firefox here has no audio output, so WebAudio cannot listen to it).
            await wait_js(page, RECEIVES)
            await wait_js(
                page, "return document.getElementById('call-timer').textContent !== '0:00'"
            )
            await page.click("#call-hangup")
            ended = await operator.wait_for("call:ended", lambda m: m["call_id"] == call_id)
            assert ended["reason"] == "hangup" and ended["by"] == "visitor", ended
            assert ended["duration"] >= 1
            errors = await page.console_errors()
            assert errors == [], errors
        finally:
            if media is not None:
                await media.close()
            await page.close()
            await operator.close()
