"""One log line per request with a request id, no secrets in the log, /metrics for Prometheus."""

from __future__ import annotations

import re

from tests.support.clients import (
    ADMIN_COOKIE,
    client_id,
    jarless,
    start_visitor,
    visitor_peer,
)
from tests.support.server import ADMIN_PASSWORD, Server

SERVER_ENV = {"TRUSTED_PROXIES": "127.0.0.1", "METRICS_TOKEN": "scrape-me-0123456789"}


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
    assert match, f"{name} not in:\n{text}"
    return float(match.group(1))


async def test_one_line_per_request_with_its_id(server: Server) -> None:
    async with jarless() as http:
        async with http.get(server.url + "/") as r:
            made = r.headers["X-Request-ID"]
        async with http.get(server.url + "/", headers={"X-Request-ID": "proxy-id-42"}) as r:
            assert r.headers["X-Request-ID"] == "proxy-id-42", "a trusted proxy's id is kept"
        async with http.get(server.url + "/", headers={"X-Request-ID": "bad id <x>"}) as r:
            assert r.headers["X-Request-ID"] != "bad id <x>"
    log = server.log()
    assert re.search(rf"request id={made} method=GET path=/ status=200 ms=[0-9.]+ client=", log)
    assert "request id=proxy-id-42 method=GET path=/ status=200" in log


async def test_secrets_stay_out_of_the_log(server: Server) -> None:
    token, _ = await start_visitor(server.url, "Gizli")
    async with jarless() as http:
        async with http.get(server.url + "/continue/handoff-secret-token") as r:
            assert r.status in (200, 303, 400, 404, 410)
        async with http.post(
            server.url + "/admin/login",
            data={"password": ADMIN_PASSWORD},
            headers={"Cookie": f"sohbet_visitor={token}"},
            allow_redirects=False,
        ) as r:
            assert r.status == 303
    log = server.log()
    assert "path=/continue/… " in log and "handoff-secret-token" not in log
    for secret in (ADMIN_PASSWORD, token, "test-secret-key"):
        assert secret not in log, secret


async def test_metrics_for_the_operator_and_a_scraper_only(
    server: Server, admin_token: str
) -> None:
    token, cid = await start_visitor(server.url, "Sayac")
    peer = await visitor_peer(server.url, token)
    try:
        ack = await peer.call("send", {"chat_id": cid, "text": "bir", "client_id": client_id()})
        assert ack["ok"]
        async with jarless() as http:
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                async with http.get(server.url + "/metrics", headers=headers) as r:
                    assert r.status == 404
            async with http.get(
                server.url + "/metrics", headers={"Authorization": "Bearer scrape-me-0123456789"}
            ) as r:
                assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
                scraped = await r.text()
            async with http.get(
                server.url + "/metrics", headers={"Cookie": f"{ADMIN_COOKIE}={admin_token}"}
            ) as r:
                assert r.status == 200
        assert metric(scraped, 'sohbet_sockets_connected{role="visitor"}') >= 1
        assert metric(scraped, 'sohbet_messages_stored_total{role="visitor"}') >= 1
        assert metric(scraped, "sohbet_messages") >= 1
        assert metric(scraped, 'sohbet_telegram_outbox{status="pending"}') == 0
        assert metric(scraped, "sohbet_calls_active") == 0
        assert 'sohbet_http_requests_total{status="200"}' in scraped
    finally:
        await peer.close()
