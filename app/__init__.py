"""Sohbet: a self-hosted support chat. `create_app` builds the whole server."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import hashlib
import logging
import os
from collections.abc import AsyncGenerator, Mapping
from pathlib import Path
from urllib.parse import quote

import socketio
from jinja2 import ChoiceLoader, FileSystemLoader, PrefixLoader
from quart import Quart

from app import calls as call_feature
from app import compression, db, media, observability, selftest, telegram, web
from app.admin.auth import AdminAuth, LogDelivery
from app.admin.operators import Operators
from app.admin.views import bp as admin_bp
from app.chat.fanout import Fanout
from app.chat.namespace import ChatNamespace
from app.chat.previews import audio_length_text
from app.chat.queries import ChatQueries, sort_key
from app.chat.receipts import Receipts, receipt_state
from app.chat.rooms import visitor_room
from app.chat.service import ChatService
from app.chat.views import bp as visitor_bp
from app.config import load_settings
from app.core.clock import Clock, RealClock
from app.core.ratelimit import Limiter
from app.i18n import current_locale, gettext, load_catalogs, ngettext
from app.media.storage import build_store
from app.realtime import ExitOnFailedStart, create_presence, create_sio, install
from app.realtime.manager import LeanRedisManager
from app.render import Renderer
from app.replies.service import SavedReplies
from app.selftest.repair import announce_presence
from app.site import bp as site_bp
from app.telegram.views import bp as telegram_bp
from app.timefmt import local_hhmm, local_stamp
from app.widget.origins import WidgetOrigins
from app.widget.pages import StartPage

PACKAGE = Path(__file__).resolve().parent
# At a stop, how long the emits still queued for Redis may take to go out.
FLUSH_ON_STOP_SECONDS = 2.0


def site_root() -> Path:
    """Where templates/, partials/ and static/ are: beside the package in a source checkout
    (or an editable install), else SOHBET_ROOT, else the working directory (the Docker
    image installs the package and keeps those folders in its WORKDIR)."""
    for candidate in (PACKAGE.parent, Path(os.environ.get("SOHBET_ROOT", ".")).resolve()):
        if (candidate / "templates").is_dir():
            return candidate
    raise RuntimeError(
        f"templates/ not found beside {PACKAGE} nor in SOHBET_ROOT or the working directory"
    )


log = logging.getLogger("sohbet")


def _asset_url_factory(static_root: Path) -> object:
    @functools.cache
    def asset(path: str) -> str:
        """A static file's URL with a content hash, so it can be cached for a year."""
        digest = hashlib.sha256((static_root / path).read_bytes()).hexdigest()[:10]
        return f"/static/{path}?v={digest}"

    return asset


def _inline_svg_factory(static_root: Path) -> object:
    @functools.cache
    def inline_svg(path: str) -> str:
        """A small SVG as a data: URL (the favicon: one request fewer on the first load)."""
        svg = (static_root / path).read_text().strip()
        return "data:image/svg+xml," + quote(svg, safe=" :/='<>,.()-")

    return inline_svg


def create_app(
    test_config: Mapping[str, str] | None = None, *, clock: Clock | None = None
) -> Quart:
    """Build the Quart app with its Socket.IO server, services and blueprints.

    `clock` lets a test run background workers on simulated time. Each service gets what it
    uses as constructor arguments, so this function is the whole graph, top to bottom. Quart
    starts the `while_serving` generators in the order they are registered below and stops
    them in reverse: the database's comes first, so it is up for all the others.
    """
    clock = clock or RealClock()
    settings = load_settings(test_config)
    root = site_root()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    app = Quart(
        __name__, static_folder=str(root / "static"), template_folder=str(root / "templates")
    )
    app.config["SOHBET"] = settings
    db.init_app(app)
    app.config["SECRET_KEY"] = settings.secret_key
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    # Static files revalidate, except content-hashed URLs (`?v=`), which are immutable.
    app.config["SEND_FILE_MAX_AGE_DEFAULT"] = None
    app.jinja_loader = ChoiceLoader(
        [
            FileSystemLoader(str(root / "templates")),
            PrefixLoader({"partials": FileSystemLoader(str(root / "partials"))}),
        ]
    )

    load_catalogs(PACKAGE / "translations")
    env = app.jinja_env
    env.add_extension("jinja2.ext.i18n")
    env.install_gettext_callables(gettext, ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.globals.update(
        asset=_asset_url_factory(root / "static"),
        inline_svg=_inline_svg_factory(root / "static"),
        settings=settings,
        current_locale=current_locale,
        sort_key=sort_key,
        receipt_state=receipt_state,
        visitor_room=visitor_room,
    )
    env.filters["hhmm"] = lambda moment: local_hhmm(moment, settings.zone)
    env.filters["stamp"] = lambda moment: local_stamp(moment, settings.zone)
    env.filters["iso"] = lambda moment: moment.isoformat().replace("+00:00", "Z")
    env.filters["duration"] = audio_length_text

    sio = create_sio(settings)
    presence = create_presence(settings)
    renderer = Renderer(env)
    env.globals["once_per_locale"] = renderer.once_per_locale

    # Rate budgets: in Redis when the processes share one, else in PostgreSQL, else in memory
    # (app/core/ratelimit.py).
    limiter = Limiter(settings.redis_url, settings.redis_channel, settings.database_url)

    # The chat's single write path. Its listeners act inside each message's transaction (the
    # Telegram outbox row, the metrics count); the outbox also learns what the visitor has seen.
    media_store = build_store(settings.media)
    metrics = observability.Metrics()
    outbox = telegram.build_outbox(settings, clock)  # None without a bot
    chat = ChatService(
        settings,
        queries=ChatQueries(),
        fanout=Fanout(settings, sio, renderer, presence),
        receipts=Receipts(sio, seen_listeners=[outbox] if outbox else []),
        # StartPage: a widget conversation starts with the host page it was opened on.
        listeners=[outbox, metrics, StartPage()] if outbox else [metrics, StartPage()],
        media_store=media_store,
        limiter=limiter,
    )

    # The team: at start-up the owner is made from ADMIN_PASSWORD when there is no operator
    # (registered before the features below, so it runs before they serve).
    operators = Operators(settings, sio, limiter)

    @app.while_serving
    async def team() -> AsyncGenerator[None, None]:
        await operators.ensure_owner()
        yield

    # The features around it, each given what it uses.
    media_service = media.init_app(app, chat, media_store, limiter)
    replies = SavedReplies(settings.max_message_chars)
    bridge = telegram.init_app(app, chat, outbox, media_service, clock, replies, operators)
    if bridge is not None:
        # The notice names the conversation's operator once someone takes it.
        chat.assignment.watchers.append(bridge.page_changed)
    auth = AdminAuth(settings, bridge or LogDelivery(), limiter)
    sio.register_namespace(ChatNamespace(chat, auth, media_service))
    calls = call_feature.init_app(app, chat, sio, auth, bridge, limiter)
    app.extensions["sohbet"] = web.Services(
        settings=settings,
        sio=sio,
        chat=chat,
        auth=auth,
        media=media_service,
        telegram=bridge,
        widget_origins=WidgetOrigins(settings.widget_origins),
        replies=replies,
        operators=operators,
    )

    web.init_app(app)
    observability.init_app(app, metrics, sio, calls)
    compression.init_app(app)
    app.register_blueprint(site_bp)
    app.register_blueprint(visitor_bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(telegram_bp)

    @app.while_serving
    async def realtime() -> AsyncGenerator[None, None]:
        # Many small objects per message: the default thresholds cause long gen-2 pauses (p99).
        gc.set_threshold(50_000, 50, 1_000)
        # What start-up built (modules, templates, the app) lives as long as the process:
        # keep it out of every later collection's walk.
        gc.collect()
        gc.freeze()
        # With Redis: a heartbeat, and the sockets of processes that stopped leave presence.
        await presence.start(functools.partial(announce_presence, chat))
        yield
        await chat.close()
        if isinstance(sio.manager, LeanRedisManager):
            # What the last disconnect handlers emitted reaches the other processes (not
            # waiting long for a Redis that is away: the stop has its deadline).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sio.manager.flush(), FLUSH_ON_STOP_SECONDS)
        await presence.close()
        await limiter.close()

    # Its scheduler runs tests through everything above, so it stops first.
    selftest.init_app(app, chat, bridge, clock, calls=calls, media=media_service)

    return app


def asgi_app(app: Quart) -> socketio.ASGIApp:
    """Socket.IO in front of Quart; no on_startup/on_shutdown, so lifespan reaches Quart."""
    install(ws_compression=app.config["SOHBET"].ws_compression)
    sio = web.services(app).sio
    return socketio.ASGIApp(sio, other_asgi_app=ExitOnFailedStart(app))
