"""The fake Telegram Bot API speaks what real aiogram 3 sends and expects."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiogram import Bot, Dispatcher, F
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    ReactionTypeEmoji,
    ReplyParameters,
)
from aiogram.webhook.aiohttp_server import SimpleRequestHandler

from tests.support.fake_telegram import FakeTelegram

JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40 + b"\xff\xd9"
OGG = b"OggS" + b"\x00" * 2000


def make_bot(fake: FakeTelegram, token: str | None = None) -> Bot:
    session = AiohttpSession(api=TelegramAPIServer.from_base(fake.base_url))
    return Bot(token or fake.token, session=session)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
async def forum() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(forum=True) as fake:
        yield fake


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    bot = make_bot(fake)
    yield bot
    await bot.session.close()


def keyboard() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text="Sohbeti aç", url="https://sohbet.example.com/admin/c/1")],
            [InlineKeyboardButton(text="Üstlen", callback_data="take:1")],
        ]
    )


async def test_get_me(fake: FakeTelegram, bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.is_bot, me.username) == (123456789, True, "sohbet_test_bot")
    assert fake.calls("getMe")[0].status == 200


async def test_send_message_with_keyboard_and_html(fake: FakeTelegram, bot: Bot) -> None:
    msg = await bot.send_message(
        fake.admin_chat_id, "<b>Yeni ziyaretçi</b> &lt;Ayşe&gt;", parse_mode="HTML",
        reply_markup=keyboard(),
    )  # fmt: skip
    assert msg.text == "Yeni ziyaretçi <Ayşe>"  # Telegram answers the parsed plain text
    assert msg.chat.type == "private" and msg.from_user and msg.from_user.is_bot
    assert msg.reply_markup and msg.reply_markup.inline_keyboard[1][0].callback_data == "take:1"
    [sent] = fake.sent(chat_id=fake.admin_chat_id)
    assert (sent.message_id, sent.text, sent.parse_mode) == (
        msg.message_id,
        "<b>Yeni ziyaretçi</b> &lt;Ayşe&gt;",
        "HTML",
    )
    assert [b.get("url") or b["callback_data"] for b in sent.buttons] == [
        "https://sohbet.example.com/admin/c/1", "take:1",
    ]  # fmt: skip
    params = fake.calls("sendMessage")[0].params
    assert params["chat_id"] == fake.admin_chat_id and isinstance(params["reply_markup"], dict)

    reply = await bot.send_message(
        fake.admin_chat_id, "yanıt", reply_parameters=ReplyParameters(message_id=msg.message_id)
    )
    assert reply.message_id == msg.message_id + 1
    assert reply.reply_to_message and reply.reply_to_message.text == "Yeni ziyaretçi <Ayşe>"

    with pytest.raises(
        TelegramBadRequest, match='can\'t parse entities: Unsupported start tag "br"'
    ):
        await bot.send_message(fake.admin_chat_id, "a<br>b", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await bot.send_message(fake.admin_chat_id, "1 < 2", parse_mode="HTML")
    local = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="x", url="http://localhost:8000/admin")]]
    )
    with pytest.raises(TelegramBadRequest, match="Wrong HTTP URL"):
        await bot.send_message(fake.admin_chat_id, "x", reply_markup=local)
    with pytest.raises(TelegramBadRequest, match="message to be replied not found"):
        await bot.send_message(fake.admin_chat_id, "x", reply_to_message_id=999)
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(fake.admin_chat_id, "a" * 4097)
    assert len(fake.sent()) == 2


async def test_upload_photo_voice_and_reuse_file_id(fake: FakeTelegram, bot: Bot) -> None:
    photo = await bot.send_photo(
        fake.admin_chat_id, BufferedInputFile(JPEG, "shot.jpg"), caption="<i>ekran</i>",
        parse_mode="HTML",
    )  # fmt: skip
    assert photo.photo and photo.caption == "ekran"
    voice = await bot.send_voice(fake.admin_chat_id, BufferedInputFile(OGG, "v.ogg"), duration=3)
    assert voice.voice and voice.voice.duration == 3 and voice.voice.mime_type == "audio/ogg"
    sent_photo, sent_voice = fake.sent()
    assert (sent_photo.media_kind, sent_photo.data, sent_photo.text) == (
        "photo",
        JPEG,
        "<i>ekran</i>",
    )
    assert sent_photo.file and sent_photo.file.filename == "shot.jpg"
    assert sent_photo.file.content_type == "application/octet-stream"  # aiogram sets no part type
    assert sent_voice.data == OGG and sent_voice.file and sent_voice.file.filename == "v.ogg"
    call = fake.calls("sendPhoto")[0]
    assert "photo" in call.files and "photo" not in call.params  # attach://<key> was resolved

    doc = await bot.send_document(fake.admin_chat_id, BufferedInputFile(b"%PDF-1.4", "kvkk.pdf"))
    assert doc.document and doc.document.file_name == "kvkk.pdf"
    assert doc.document.mime_type == "application/pdf"
    resent = await bot.send_document(fake.admin_chat_id, doc.document.file_id)
    assert resent.document and resent.document.file_id == doc.document.file_id
    assert fake.sent()[-1].data == b"%PDF-1.4"
    with pytest.raises(TelegramBadRequest, match="wrong file identifier"):
        await bot.send_audio(fake.admin_chat_id, "CQACunknown")


async def test_admin_photo_download_round_trip(fake: FakeTelegram, bot: Bot) -> None:
    await fake.admin_photo(JPEG, caption="bakın")
    [update] = await bot.get_updates()
    assert update.message and update.message.photo and update.message.caption == "bakın"
    assert update.message.from_user and update.message.from_user.id == fake.admin_user["id"]
    largest = update.message.photo[-1]
    file = await bot.get_file(largest.file_id)
    assert file.file_size == len(JPEG) and file.file_path and file.file_path.startswith("photos/")
    data = await bot.download(largest.file_id)
    assert isinstance(data, io.BytesIO) and data.getvalue() == JPEG

    big = fake.add_file("document", b"x", filename="big.zip", size=25 * 1024 * 1024)
    with pytest.raises(TelegramBadRequest, match="file is too big"):
        await bot.get_file(big.file_id)
    with pytest.raises(TelegramBadRequest, match="invalid file_id"):
        await bot.get_file("nope")


async def test_get_updates_offset_and_limit(fake: FakeTelegram, bot: Bot) -> None:
    first = await fake.admin_text("bir")
    await fake.admin_text("iki")
    await fake.admin_command("/list")
    updates = await bot.get_updates()
    assert [u.message.text for u in updates if u.message] == ["bir", "iki", "/list"]
    assert updates[2].message and updates[2].message.entities
    assert updates[2].message.entities[0].type == "bot_command"
    assert [u.update_id for u in await bot.get_updates(limit=1)] == [first.update["update_id"]]
    again = await bot.get_updates(offset=updates[1].update_id)  # confirms the first one
    assert [u.update_id for u in again] == [u.update_id for u in updates[1:]]
    assert await bot.get_updates(offset=updates[-1].update_id + 1) == []
    assert fake.pending_updates == []


async def test_long_poll_waits_and_wakes(fake: FakeTelegram, bot: Bot) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await bot.get_updates(timeout=1) == []
    assert loop.time() - started >= 0.9

    poll = asyncio.create_task(bot.get_updates(timeout=20))
    await fake.wait_for_call("getUpdates", lambda c: c.params.get("timeout") == 20)
    await asyncio.sleep(0.1)
    assert not poll.done()
    started = loop.time()
    await fake.admin_text("merhaba")
    [update] = await asyncio.wait_for(poll, 2)
    assert update.message and update.message.text == "merhaba"
    assert loop.time() - started < 1


async def test_dispatcher_polling_gets_text_and_button(fake: FakeTelegram, bot: Bot) -> None:
    dp = Dispatcher()
    seen: list[str] = []

    @dp.message(F.text)
    async def on_text(message: Message) -> None:
        seen.append(f"text:{message.text}")
        assert message.reply_to_message and message.reply_to_message.from_user
        assert message.reply_to_message.from_user.is_bot
        await message.answer(f"iletildi: {message.text}")

    @dp.callback_query()
    async def on_button(query: CallbackQuery) -> None:
        seen.append(f"button:{query.data}")
        await query.answer("Üstlenildi")

    question = await bot.send_message(
        fake.admin_chat_id, "Ziyaretçi yazdı", reply_markup=keyboard()
    )
    polling = asyncio.create_task(
        dp.start_polling(bot, polling_timeout=1, handle_signals=False, close_bot_session=False)
    )
    [sent] = fake.sent()
    await fake.admin_button(sent, "take:1")
    await fake.admin_text("tamam", reply_to=question)  # an aiogram Message works too
    answer = await fake.wait_for_sent(lambda s: s.text == "iletildi: tamam")
    await fake.wait_for_call("answerCallbackQuery")
    await dp.stop_polling()
    await polling
    assert answer.chat_id == fake.admin_chat_id
    assert sorted(seen) == ["button:take:1", "text:tamam"]
    [answered] = fake.answered_callbacks.values()
    assert answered["text"] == "Üstlenildi"
    assert sorted(fake.calls("getUpdates")[0].params["allowed_updates"]) == [
        "callback_query",
        "message",
    ]


async def test_allowed_updates_filter_drops_other_kinds(fake: FakeTelegram, bot: Bot) -> None:
    await bot.get_updates(allowed_updates=["message"])
    sent = await bot.send_message(fake.admin_chat_id, "x", reply_markup=keyboard())
    dropped = await fake.admin_button(sent.message_id, "take:1")
    assert not dropped.delivered and await bot.get_updates() == []


async def test_webhook_posts_with_secret(fake: FakeTelegram, bot: Bot) -> None:
    dp = Dispatcher()
    got: list[str] = []

    @dp.message()
    async def on_message(message: Message) -> None:
        got.append(message.text or "")

    await fake.admin_text("önce")  # queued before the webhook: Telegram delivers it after
    app = aiohttp.web.Application()
    SimpleRequestHandler(dp, bot, secret_token="s3cret", handle_in_background=False).register(
        app, "/tg"
    )
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/tg"
    try:
        assert await bot.set_webhook(url, secret_token="s3cret")
        assert fake.webhook and fake.webhook["secret_token"] == "s3cret"
        injected = await fake.admin_text("webhook ile")
        assert injected.status == 200
        # The queued update is posted in the background: wait for it, however loaded the machine.
        deadline = asyncio.get_running_loop().time() + 30
        while len(got) < 2 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        assert got == ["önce", "webhook ile"]
        with pytest.raises(TelegramConflictError, match="webhook is active"):
            await bot.get_updates()
        info = await bot.get_webhook_info()
        assert info.url == url and info.pending_update_count == 0

        assert await bot.set_webhook(url, secret_token="wrong", drop_pending_updates=True)
        assert fake.calls("setWebhook")[-1].params["drop_pending_updates"] is True
        rejected = await fake.admin_text("yanlış sır")
        assert rejected.status == 401
        assert (
            await bot.get_webhook_info()
        ).last_error_message == "Wrong response from the webhook: 401 Unauthorized"
        assert await bot.delete_webhook()
        assert fake.webhook is None and await bot.get_updates() == []
    finally:
        await runner.cleanup()


async def test_forum_topics(forum: FakeTelegram) -> None:
    bot = make_bot(forum)
    try:
        topic = await bot.create_forum_topic(forum.admin_chat_id, "Ayşe · #12")
        assert topic.name == "Ayşe · #12" and topic.icon_color == 7322096
        tid = topic.message_thread_id
        msg = await bot.send_message(forum.admin_chat_id, "ilk", message_thread_id=tid)
        assert msg.message_thread_id == tid and msg.is_topic_message
        assert msg.chat.type == "supergroup" and msg.chat.is_forum
        assert [s.text for s in forum.sent(thread_id=tid)] == ["ilk"]

        await forum.admin_text("konu içinden")
        await forum.admin_text("başlıkta", thread_id=tid)
        await forum.admin_text("yanıt", reply_to=forum.sent()[0])
        updates = await bot.get_updates()
        general, in_topic, reply = [u.message for u in updates]
        assert general and general.message_thread_id is None
        # Telegram quirk: a plain message in a topic "replies" to the topic's service message.
        assert in_topic and in_topic.message_thread_id == tid and in_topic.reply_to_message
        assert in_topic.reply_to_message.forum_topic_created is not None
        assert reply and reply.message_thread_id == tid and reply.reply_to_message
        assert (
            reply.reply_to_message.text == "ilk" and reply.reply_to_message.message_thread_id == tid
        )

        # Replying in General to a General message: a reply-thread id that is not a topic.
        general_msg = await bot.send_message(forum.admin_chat_id, "genel")
        await forum.admin_text("cevap", reply_to=general_msg)
        [update] = await bot.get_updates(offset=updates[-1].update_id + 1)
        assert update.message and update.message.message_thread_id == general_msg.message_id
        assert not update.message.is_topic_message
        with pytest.raises(TelegramBadRequest, match="message thread not found"):
            await bot.send_message(
                forum.admin_chat_id, "x", message_thread_id=general_msg.message_id
            )

        forum.delete_topic(tid)
        with pytest.raises(TelegramBadRequest, match="message thread not found"):
            await bot.send_message(forum.admin_chat_id, "ikinci", message_thread_id=tid)
        with pytest.raises(TelegramBadRequest, match="message thread not found"):
            await bot.send_message(forum.admin_chat_id, "x", message_thread_id=4242)
        with pytest.raises(TelegramBadRequest, match="message to edit not found"):
            await bot.edit_message_text("x", chat_id=forum.admin_chat_id, message_id=msg.message_id)
        assert forum.sent()[0].deleted
        other = await bot.create_forum_topic(forum.admin_chat_id, "Mehmet")
        assert await bot.delete_forum_topic(forum.admin_chat_id, other.message_thread_id)
        assert forum.topics == {}
        with pytest.raises(TelegramBadRequest, match="not a forum"):
            await bot.create_forum_topic(forum.admin_user["id"], "özel sohbet")
    finally:
        await bot.session.close()


async def test_edits_reactions_callbacks(fake: FakeTelegram, bot: Bot) -> None:
    msg = await bot.send_message(fake.admin_chat_id, "bekliyor", reply_markup=keyboard())
    edited = await bot.edit_message_text(
        "üstlenildi", chat_id=fake.admin_chat_id, message_id=msg.message_id
    )
    assert isinstance(edited, Message) and edited.text == "üstlenildi" and edited.edit_date
    assert edited.reply_markup is None  # no reply_markup in the edit removes the keyboard
    [sent] = fake.sent()
    assert (sent.text, sent.edits, sent.reply_markup) == ("üstlenildi", ["bekliyor"], None)
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text(
            "üstlenildi", chat_id=fake.admin_chat_id, message_id=msg.message_id
        )

    mine = await fake.admin_text("ilk hali")
    edit = await fake.admin_edit(mine, "son hali")
    [_, update] = await bot.get_updates()
    assert update.edited_message and update.edited_message.text == "son hali"
    assert (
        update.edited_message.message_id == mine.message["message_id"] == edit.message["message_id"]
    )
    with pytest.raises(TelegramBadRequest, match="can't be edited"):
        await bot.edit_message_text(
            "x", chat_id=fake.admin_chat_id, message_id=mine.message["message_id"]
        )

    mid = mine.message["message_id"]
    assert await bot.set_message_reaction(fake.admin_chat_id, mid, [ReactionTypeEmoji(emoji="👍")])
    assert fake.reactions[(fake.admin_chat_id, mid)] == [{"type": "emoji", "emoji": "👍"}]
    with pytest.raises(TelegramBadRequest, match="REACTION_INVALID"):
        await bot.set_message_reaction(fake.admin_chat_id, mid, [ReactionTypeEmoji(emoji="✅")])
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query("12345")


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("429", TelegramRetryAfter),
        ("502_html", ClientDecodeError),
        ("500", TelegramServerError),
        ("drop", TelegramNetworkError),
        ("403", TelegramForbiddenError),
        ("400", TelegramBadRequest),
    ],
)
async def test_faults(fake: FakeTelegram, bot: Bot, kind: str, error: type[Exception]) -> None:
    fake.fail_next("sendMessage", kind, retry_after=7)  # type: ignore[arg-type]
    with pytest.raises(error) as caught:
        await bot.send_message(fake.admin_chat_id, "deneme")
    if kind == "429":
        assert isinstance(caught.value, TelegramRetryAfter) and caught.value.retry_after == 7
    assert fake.sent() == []
    assert (await bot.send_message(fake.admin_chat_id, "ikinci")).text == "ikinci"


async def test_drop_after_sending_and_outage(fake: FakeTelegram, bot: Bot) -> None:
    fake.fail_next("sendMessage", "drop_after")
    with pytest.raises(TelegramNetworkError):
        await bot.send_message(fake.admin_chat_id, "gitti mi?")
    assert [s.text for s in fake.sent()] == ["gitti mi?"]  # delivered, but the bot never heard

    fake.outage(True)
    with pytest.raises(ClientDecodeError):
        await bot.get_me()
    fake.outage(False)
    assert (await bot.get_me()).is_bot

    fake.unreachable.add(42)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(42, "x")
    wrong = make_bot(fake, token="987654321:AAwrongtoken")
    try:
        with pytest.raises(TelegramUnauthorizedError):
            await wrong.get_me()
    finally:
        await wrong.session.close()


async def test_raw_wire_format(fake: FakeTelegram) -> None:
    base = f"{fake.base_url}/bot{fake.token}"
    markup = {"inline_keyboard": [[{"text": "a", "callback_data": "b"}]]}
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{base}/sendMessage",
            json={"chat_id": fake.admin_chat_id, "text": "json", "reply_markup": markup},
        ) as r:
            body: dict[str, Any] = await r.json()
        assert body["ok"] and body["result"]["reply_markup"] == markup
        assert set(body["result"]) >= {"message_id", "date", "chat", "from", "text"}
        form = {
            "chat_id": str(fake.admin_chat_id),
            "text": "form",
            "reply_markup": json.dumps(markup),
        }
        async with http.post(f"{base}/sendMessage", data=form) as r:
            assert (await r.json())["result"]["message_id"] == 2
        async with http.get(f"{base}/getMe") as r:
            assert (await r.json())["result"]["username"] == "sohbet_test_bot"
        async with http.post(f"{base}/sendTelepathy") as r:
            assert (r.status, await r.json()) == (
                404,
                {"ok": False, "error_code": 404, "description": "Not Found"},
            )
        fake.fail_next("getMe", "429", retry_after=3)
        async with http.post(f"{base}/getMe") as r:
            assert r.status == 429 and (await r.json())["parameters"] == {"retry_after": 3}
        async with http.get(f"{fake.base_url}/file/bot{fake.token}/photos/none.jpg") as r:
            assert r.status == 404
    assert [c.params.get("text") for c in fake.calls("sendMessage")] == ["json", "form"]
    assert fake.calls("sendMessage")[1].params["reply_markup"] == markup
    assert fake.calls("sendMessage")[1].params["chat_id"] == fake.admin_chat_id


async def test_downloads_and_wait_timeout(fake: FakeTelegram, bot: Bot) -> None:
    # Downloads are plain aiohttp GETs: errors are aiohttp's, not aiogram's TelegramAPIError.
    stored = fake.add_file("voice", OGG)
    with pytest.raises(aiohttp.ClientResponseError) as missing:
        await bot.download_file("voice/none.oga")
    assert missing.value.status == 404
    fake.outage(True)
    with pytest.raises(ClientDecodeError):
        await bot.download(stored.file_id)  # its getFile meets the HTML 502 first
    fake.outage(False)
    fake.fail_next("download", "502_html")
    with pytest.raises(aiohttp.ClientResponseError) as down:
        await bot.download_file(stored.file_path)
    assert down.value.status == 502
    # One dropped connection is retried by aiohttp on its own (GET is idempotent and the
    # connection was a reused keep-alive one); two in a row surface.
    fake.fail_next("download", "drop")
    data = await bot.download_file(stored.file_path)
    assert data and data.read() == OGG
    fake.fail_next("download", "drop", count=2)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await bot.download_file(stored.file_path)
    assert len(fake.calls("download")) == 6  # 404, 502, drop + retry, drop + retry

    with pytest.raises(AssertionError, match=r"waited 0\.2s for a sent message"):
        await fake.wait_for_sent(timeout=0.2)
