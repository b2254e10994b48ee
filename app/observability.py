"""One structured log line per request (with a request id) and `/metrics` for Prometheus.

Log lines are `key=value` pairs a log shipper can parse; the request id comes from a trusted
proxy's X-Request-ID or is made here, and goes back in the response. Paths that carry a
secret (the one-time device link) are logged without it; query strings are never logged.

`/metrics` (Prometheus text format) answers a signed-in operator, or a scraper that sends
`Authorization: Bearer <METRICS_TOKEN>`; everyone else gets 404. Each process reports its
own sockets, calls and relay; messages and the outbox are read from the database.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Sequence

import socketio
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from quart import Quart, Response, g, request
from tortoise.backends.base.client import BaseDBAsyncClient

from app.calls.service import CallService
from app.chat.rooms import ADMINS, visitors_room
from app.config import Settings
from app.core.clientaddr import from_trusted_proxy
from app.core.security import constant_time_equal
from app.i18n import LOCALES
from app.models import Conversation, Message, TgOutbox
from app.web import client_address, current_operator

log = logging.getLogger("sohbet.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Path parts that are secrets themselves: logged as "…".
_SECRET_PATHS = re.compile(r"^(/continue/)[^/]+")
QUIET = {"/health", "/health/ready", "/metrics"}


class Metrics:
    """The process's Prometheus registry and the counters the app updates as it goes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "sohbet_http_requests", "HTTP requests served", ["status"], registry=self.registry
        )
        self.sockets = Gauge(
            "sohbet_sockets_connected",
            "Socket.IO /chat connections in this process (visitor pages, operator panels)",
            ["role"],
            registry=self.registry,
        )
        self.messages = Counter(
            "sohbet_messages_stored",
            "Messages stored by this process",
            ["role"],
            registry=self.registry,
        )
        self.stored_total = Gauge(
            "sohbet_messages", "Messages in the database", registry=self.registry
        )
        self.conversations = Gauge(
            "sohbet_conversations", "Conversations in the database", registry=self.registry
        )
        self.outbox = Gauge(
            "sohbet_telegram_outbox",
            "Telegram outbox items by status",
            ["status"],
            registry=self.registry,
        )
        self.calls = Gauge(
            "sohbet_calls_active", "Calls this process holds", registry=self.registry
        )
        self.relay = Gauge(
            "sohbet_relay_peer_connections",
            "Peer connections of this process's media relay and echo peer",
            registry=self.registry,
        )
        self.relayed = Gauge(
            "sohbet_relayed_calls",
            "Calls going through this process's relay",
            registry=self.registry,
        )

    # ChatListener: count what this process stores ---------------------------------------------

    async def conversation_started(self, tx: BaseDBAsyncClient, conv: Conversation) -> None:
        return None

    async def messages_stored(
        self, tx: BaseDBAsyncClient, stored: Sequence[tuple[Conversation, Message]]
    ) -> None:
        for _, message in stored:
            self.messages.labels(message.role).inc()

    def committed(self) -> None:
        return None

    async def refresh(self, sio: socketio.AsyncServer, calls: CallService) -> None:
        """Read the figures that live elsewhere (database, sockets, calls) just before a scrape."""
        self.stored_total.set(await Message.filter(deleted_at__isnull=True).count())
        self.conversations.set(await Conversation.filter(synthetic=False).count())
        for status in ("pending", "failed"):
            self.outbox.labels(status).set(await TgOutbox.filter(status=status).count())
        rooms = sio.manager.rooms.get("/chat", {})
        visitors = sum(len(rooms.get(visitors_room(locale), ())) for locale in LOCALES)
        self.sockets.labels("visitor").set(visitors)
        self.sockets.labels("admin").set(len(rooms.get(ADMINS, ())))
        self.calls.set(len(calls.calls))
        self.relay.set(calls.hub.peer_connections)
        self.relayed.set(calls.hub.relayed_calls)


def init_app(app: Quart, metrics: Metrics, sio: socketio.AsyncServer, calls: CallService) -> None:
    """Install the request log and the /metrics endpoint."""
    settings: Settings = app.config["SOHBET"]

    @app.before_request
    async def start_clock() -> None:
        g.started = time.perf_counter()
        sent = request.headers.get("X-Request-ID", "")
        trusted = from_trusted_proxy(request.remote_addr, settings.trusted_proxies)
        g.request_id = sent if trusted and _REQUEST_ID.match(sent) else secrets.token_hex(8)

    @app.after_request
    async def log_request(response: Response) -> Response:
        request_id = getattr(g, "request_id", "-")
        response.headers["X-Request-ID"] = request_id
        metrics.requests.labels(str(response.status_code)).inc()
        if request.path not in QUIET:
            elapsed = (time.perf_counter() - getattr(g, "started", time.perf_counter())) * 1000
            log.info(
                "request id=%s method=%s path=%s status=%d ms=%.1f client=%s",
                request_id,
                request.method,
                _SECRET_PATHS.sub(r"\1…", request.path),
                response.status_code,
                elapsed,
                client_address(),
            )
        return response

    @app.get("/metrics")
    async def metrics_view() -> Response:
        """Prometheus metrics for the operator or a scraper holding METRICS_TOKEN."""
        auth = request.headers.get("Authorization", "")
        token = settings.metrics_token
        scraper = bool(token) and constant_time_equal(auth, f"Bearer {token}")
        if not scraper and await current_operator() is None:
            return Response("", 404)
        await metrics.refresh(sio, calls)
        return Response(generate_latest(metrics.registry), 200, content_type=CONTENT_TYPE_LATEST)
