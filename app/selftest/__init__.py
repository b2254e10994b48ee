"""Test & Repair: real checks of the running server, clean-up, and scheduled runs to Telegram."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from quart import Quart, current_app, request

from app.calls.service import CallService
from app.chat.service import ChatService
from app.core.clock import Clock
from app.media.service import MediaService
from app.selftest.repair import RepairContext
from app.selftest.scheduler import SelfTestScheduler
from app.selftest.schedules import Schedules
from app.selftest.service import SelfTests

if TYPE_CHECKING:
    from app.telegram.bridge import TelegramBridge


@dataclass(frozen=True)
class SelfTestServices:
    """What the /test page and the API share."""

    tests: SelfTests
    scheduler: SelfTestScheduler
    schedules: Schedules
    repair: RepairContext


def selftest() -> SelfTestServices:
    svc: SelfTestServices = current_app.extensions["selftest"]
    return svc


def init_app(
    app: Quart,
    chat: ChatService,
    bridge: TelegramBridge | None,
    clock: Clock,
    *,
    calls: CallService,
    media: MediaService,
) -> SelfTestServices:
    """Build the services, register the page and the API, and run the scheduler while serving.

    Call it after the database's `while_serving` is registered: the scheduler reads the table.
    """
    from app.selftest import api, views

    settings = chat.settings
    tests = SelfTests(chat, bridge, clock, calls=calls, media=media)
    scheduler = tests.scheduler
    svc = SelfTestServices(
        tests=tests,
        scheduler=scheduler,
        schedules=Schedules(scheduler, clock, settings.tz),
        repair=RepairContext(
            chat, bridge, clock, settings.repair_stuck_attempts, calls=calls, media=media
        ),
    )
    app.extensions["selftest"] = svc
    app.register_blueprint(views.bp)
    app.register_blueprint(api.bp)

    @app.before_request
    async def learn_own_address() -> None:
        # Scheduled runs have no request: they call the address requests came in on.
        if tests.learnt_url is None:
            tests.learn(request.scope)

    @app.while_serving
    async def selftest_scheduler() -> AsyncGenerator[None, None]:
        async for _ in scheduler.serve():
            yield

    return svc
