"""A fake Telegram Bot API server, in-process on aiohttp, speaking the real HTTP wire format.

Point aiogram 3 at it with
``AiohttpSession(api=TelegramAPIServer.from_base(fake.base_url))``: aiogram then POSTs to
``{base}/bot{token}/{method}`` and downloads from ``{base}/file/bot{token}/{file_path}``.

What it fakes, as Telegram does it:
- bodies as urlencoded / multipart form (aiogram: every value a string, nested objects
  JSON-encoded, uploads as ``attach://<key>`` plus a part named ``<key>``) or JSON; replies
  ``{"ok": true, "result": ...}`` / ``{"ok": false, "error_code", "description", "parameters"}``;
- getMe, getChat (``is_forum`` for a forum), getUpdates (offset confirmation, long poll that
  wakes on a new update, limit, allowed_updates kept until changed, a newer getUpdates ends
  an older one with 409; or, with ``long_poll=False``, an answer at once as a proxy that does
  not hold requests gives),
  setWebhook / deleteWebhook / getWebhookInfo (getUpdates answers 409 while a webhook is set,
  updates are POSTed with ``X-Telegram-Bot-Api-Secret-Token``);
- sendMessage / sendPhoto / sendVoice / sendAudio / sendDocument (upload or a known file_id),
  editMessageText (omitting reply_markup removes the keyboard; "message is not modified"),
  deleteMessage, sendChatAction, answerCallbackQuery, setMessageReaction (only the emoji
  Telegram allows), createForumTopic / deleteForumTopic (a topic's id is the id of its
  "topic created" service message; deleting it deletes its messages), getFile (20 MB limit)
  and the download route; a sendVoice whose file is not OGG/MP3/M4A arrives as a document, as
  Telegram shows it;
- checks that bite in production: HTML parse_mode with an unsupported tag or a bare ``<``,
  4096 / 1024 length limits, callback_data over 64 bytes, button URLs whose host has no dot
  (``http://localhost:8000``), replies to unknown messages, unknown or deleted topics,
  unreachable chats (403), wrong token (401), unknown method (404);
- Telegram's threading quirks for the admin's messages: in a forum topic a message that is
  not a reply carries ``reply_to_message`` = the topic's "created" service message; in a
  supergroup a reply outside topics carries ``message_thread_id`` (the replied message's id,
  a reply thread) without ``is_topic_message``, and sending to that id fails.

What it does not fake: MarkdownV2 parsing (text passes through), message entities in
results, inline mode, payments, media groups, chats other than private/supergroup, rate
limits (inject 429 with ``fail_next``), webhook retries (a failed POST is only recorded in
``webhook_errors`` / getWebhookInfo), HTTPS (http webhook URLs are accepted), photo
dimensions (fixed 1280x960 with a 320x240 thumbnail of the same bytes).
"""

from __future__ import annotations

import asyncio
import html
import itertools
import json
import mimetypes
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, NoReturn, Protocol, TypeAlias, TypeVar
from urllib.parse import urlsplit

from aiohttp import ClientError, ClientSession, ClientTimeout, web

JSON = dict[str, Any]
T = TypeVar("T")
FaultKind = Literal["429", "502_html", "500", "drop", "drop_after", "403", "400"]


class HasMessageId(Protocol):  # SentMessage, an aiogram Message...
    @property
    def message_id(self) -> int: ...


MessageRef: TypeAlias = "HasMessageId | Injected | JSON | int"

MAX_DOWNLOAD = 20 * 1024 * 1024
MAX_UPLOAD = 50 * 1024 * 1024
NGINX_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n"
    "</body>\r\n</html>\r\n"
)
INT_FIELDS = frozenset(
    "chat_id message_id message_thread_id offset limit timeout reply_to_message_id duration"
    " icon_color cache_time max_connections".split()
)
BOOL_FIELDS = frozenset(
    "drop_pending_updates disable_notification protect_content show_alert is_big"
    " allow_sending_without_reply has_spoiler".split()
)
JSON_FIELDS = frozenset(
    "reply_markup reply_parameters allowed_updates entities caption_entities reaction"
    " link_preview_options".split()
)
NOT_BY_DEFAULT = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
HTML_TAGS = frozenset(
    "b strong i em u ins s strike del span tg-spoiler a code pre blockquote tg-emoji".split()
)
REACTIONS = frozenset(
    "❤ 👍 👎 🔥 🥰 👏 😁 🤔 🤯 😱 🤬 😢 🎉 🤩 🤮 💩 🙏 👌 🕊 🤡 🥱 🥴 😍 🐳 ❤‍🔥 🌚 🌭 💯 🤣 ⚡ 🍌 🏆 💔"
    " 🤨 😐 🍓 🍾 💋 🖕 😈 😴 😭 🤓 👻 👨‍💻 👀 🎃 🙈 😇 😨 🤝 ✍ 🤗 🫡 🎅 🎄 ☃ 💅 🤪 🗿 🆒 💘 🙉 🦄"
    " 😘 💊 🙊 😎 👾 🤷‍♂ 🤷 🤷‍♀ 😡".split()
)
_FILE_KINDS = {  # kind -> (file_id prefix, folder, default extension, default mime type)
    "photo": ("AgAC", "photos", "jpg", "image/jpeg"),
    "voice": ("AwAC", "voice", "oga", "audio/ogg"),
    "audio": ("CQAC", "music", "mp3", "audio/mpeg"),
    "document": ("BQAC", "documents", "bin", "application/octet-stream"),
}
_TAG_RE = re.compile(r"</?([a-zA-Z][\w-]*)(?:\s[^<>]*)?>")
_ENTITY_RE = re.compile(r"&(?:lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);")


class TelegramError(Exception):
    """Raised inside a method handler; becomes Telegram's error JSON."""

    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code, self.description, self.retry_after = code, description, retry_after


def bad(description: str) -> TelegramError:
    return TelegramError(400, f"Bad Request: {description}")


def html_to_plain(text: str) -> str:
    """Parse Telegram-HTML as the Bot API does: return the plain text, raise on what it rejects."""
    out: list[str] = []
    stack: list[str] = []
    pos = 0
    while (lt := text.find("<", pos)) != -1:
        out.append(text[pos:lt])
        offset = len(text[:lt].encode())
        match = _TAG_RE.match(text, lt)
        name = match.group(1).lower() if match else ""
        if match is None or (not match.group(0).startswith("</") and name not in HTML_TAGS):
            raise bad(
                f'can\'t parse entities: Unsupported start tag "{name}" at byte offset {offset}'
            )
        if match.group(0).startswith("</"):
            if not stack or stack[-1] != name:
                raise bad(f"can't parse entities: Unmatched end tag at byte offset {offset}")
            stack.pop()
        else:
            stack.append(name)
        pos = match.end()
    out.append(text[pos:])
    if stack:
        raise bad(
            f"can't parse entities: Can't find end tag corresponding to start tag \"{stack[-1]}\""
        )
    return _ENTITY_RE.sub(lambda m: html.unescape(m.group(0)), "".join(out))


@dataclass
class Upload:
    filename: str
    content_type: str
    data: bytes


@dataclass
class Call:
    """One request the bot made: the method as named in the URL, parsed params, uploads."""

    method: str
    params: JSON
    files: dict[str, Upload]
    status: int = 0  # HTTP status answered (0 while running, or when the connection was dropped)
    at: float = field(default_factory=time.monotonic)  # when the request arrived


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    kind: str
    data: bytes
    size: int
    file_path: str
    filename: str | None = None
    mime_type: str | None = None
    content_type: str | None = None  # of the multipart part, for files the bot uploaded


@dataclass
class SentMessage:
    """A message the bot sent; `message` is the Message JSON, kept current across edits."""

    chat_id: int
    message_id: int
    method: str
    thread_id: int | None
    text: str | None  # as the bot sent it (HTML not parsed); caption for media
    parse_mode: str | None
    reply_markup: JSON | None
    reply_to_message_id: int | None
    media_kind: str | None  # "photo" | "voice" | "audio" | "document"
    file: StoredFile | None
    message: JSON
    edits: list[str] = field(default_factory=list)  # earlier texts, oldest first
    deleted: bool = False

    @property
    def data(self) -> bytes | None:
        return self.file.data if self.file else None

    @property
    def buttons(self) -> list[JSON]:
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [button for row in rows for button in row]


@dataclass
class Injected:
    """An update the fake made; `status`: the webhook's HTTP answer, None if queued (or the
    webhook was unreachable: see `FakeTelegram.webhook_errors`)."""

    update: JSON
    status: int | None = None
    delivered: bool = True  # False when allowed_updates filtered it out

    @property
    def message(self) -> JSON:
        """The update's object: the Message (or CallbackQuery...) that was delivered."""
        return next(v for k, v in self.update.items() if k != "update_id")


@dataclass
class _Fault:
    kind: FaultKind
    retry_after: int
    description: str | None


class FakeTelegram:
    """The fake server; use `async with FakeTelegram(...) as fake:` or start()/stop()."""

    def __init__(
        self,
        *,
        token: str = "123456789:AAFakeTokenForSohbetTests0123456789",
        admin_chat_id: int | None = None,
        forum: bool = False,
        admin_user: JSON | None = None,
        bot_username: str = "sohbet_test_bot",
        chat_title: str = "Sohbet operatörleri",
        unreachable: set[int] | None = None,
        retry_after: int = 5,
        strict_button_urls: bool = True,
        long_poll: bool = True,
    ) -> None:
        self.token = token
        self.bot_user: JSON = {
            "id": int(token.split(":")[0]), "is_bot": True, "first_name": "Sohbet",
            "username": bot_username, "can_join_groups": True,
            "can_read_all_group_messages": False, "supports_inline_queries": False,
        }  # fmt: skip
        self.admin_user: JSON = admin_user or {
            "id": 5550001, "is_bot": False, "first_name": "Operatör", "username": "operator",
            "language_code": "tr",
        }  # fmt: skip
        self.forum = forum
        self.admin_chat_id = admin_chat_id or (-1001234567890 if forum else self.admin_user["id"])
        self.chat_title = chat_title
        self.unreachable: set[int] = set(unreachable or ())
        self.retry_after = retry_after
        self.strict_button_urls = strict_button_urls
        # False: getUpdates answers at once whatever its timeout, as some proxies and emulators do.
        self.long_poll = long_poll
        self.webhook: JSON | None = None
        self.webhook_errors: list[str] = []
        self.answered_callbacks: dict[str, JSON] = {}
        self.reactions: dict[tuple[int, int], list[JSON]] = {}
        self.base_url = ""
        self._calls: list[Call] = []
        self._sent: list[SentMessage] = []
        self._messages: dict[int, dict[int, JSON]] = {}
        self._next_id: dict[int, itertools.count[int]] = {}
        self._topics: dict[int, dict[int, JSON]] = {}
        self._files: dict[str, StoredFile] = {}
        self._file_seq = itertools.count()
        self._updates: list[JSON] = []
        self._update_ids = itertools.count(100000001)
        self._allowed_updates: list[str] = []
        self._poll_waiter: asyncio.Future[str] | None = None
        self._callbacks: set[str] = set()
        self._faults: dict[str, list[_Fault]] = {}
        self._outage = False
        self._changed = asyncio.Event()
        self._flushing: asyncio.Task[None] | None = None
        self._http: ClientSession | None = None
        self._runner: web.AppRunner | None = None
        Handler = Callable[[JSON, dict[str, Upload]], Awaitable[Any]]
        self._methods: dict[str, Handler] = {
            "getme": self._get_me, "getchat": self._get_chat, "getupdates": self._get_updates,
            "setwebhook": self._set_webhook, "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info, "sendmessage": self._send,
            "sendphoto": partial(self._send, kind="photo"),
            "sendvoice": partial(self._send, kind="voice"),
            "sendaudio": partial(self._send, kind="audio"),
            "senddocument": partial(self._send, kind="document"),
            "editmessagetext": self._edit_message_text,
            "deletemessage": self._delete_message, "sendchataction": self._send_chat_action,
            "answercallbackquery": self._answer_callback_query,
            "setmessagereaction": self._set_message_reaction,
            "createforumtopic": self._create_forum_topic,
            "deleteforumtopic": self._delete_forum_topic, "getfile": self._get_file,
        }  # fmt: skip

    # ---- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> FakeTelegram:
        app = web.Application(client_max_size=MAX_UPLOAD + 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        self._http = ClientSession()
        return self

    async def stop(self) -> None:
        self._wake_poller("stop")
        if self._flushing:
            self._flushing.cancel()
            await asyncio.wait({self._flushing})
        if self._http:
            await self._http.close()
        if self._runner:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeTelegram:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- test controls -----------------------------------------------------------------------

    def fail_next(
        self, method: str, kind: FaultKind, count: int = 1, *,
        retry_after: int | None = None, description: str | None = None,
    ) -> None:  # fmt: skip
        """Make the next `count` calls of `method` ("*" = any, "download" = file route) fail."""
        fault = _Fault(kind, retry_after or self.retry_after, description)
        self._faults.setdefault(method.lower(), []).extend([fault] * count)

    def heal(self, method: str = "*") -> None:
        """Drop the faults still queued for `method` by `fail_next`."""
        self._faults.pop(method.lower(), None)

    def outage(self, on: bool = True) -> None:
        """While on, every request (files too) answers nginx's 502 HTML page."""
        self._outage = on

    def delete_topic(self, thread_id: int, chat_id: int | None = None) -> None:
        """An operator deletes a topic by hand (with its messages)."""
        cid = chat_id or self.admin_chat_id
        self._topics.get(cid, {}).pop(thread_id, None)
        for mid, msg in list(self._messages.get(cid, {}).items()):
            if msg.get("message_thread_id") == thread_id:
                del self._messages[cid][mid]
        for sent in self._sent:
            if sent.chat_id == cid and sent.thread_id == thread_id:
                sent.deleted = True
        self._notify()

    def add_file(
        self, kind: str, data: bytes, *, filename: str | None = None,
        mime_type: str | None = None, size: int | None = None,
    ) -> StoredFile:  # fmt: skip
        """Store a file as Telegram would; `size` overrides the real size (e.g. 25 MB)."""
        prefix, folder, ext, default_mime = _FILE_KINDS[kind]
        if filename and "." in filename and kind == "document":
            ext = filename.rsplit(".", 1)[1]
        n = next(self._file_seq)
        stored = StoredFile(
            file_id=prefix + secrets.token_urlsafe(30), file_unique_id=secrets.token_urlsafe(12),
            kind=kind, data=data, size=len(data) if size is None else size,
            file_path=f"{folder}/file_{n}.{ext}", filename=filename,
            mime_type=mime_type or (filename and mimetypes.guess_type(filename)[0]) or default_mime,
        )  # fmt: skip
        self._files[stored.file_id] = stored
        return stored

    def file(self, file_id: str) -> StoredFile:
        return self._files[file_id]

    @property
    def topics(self) -> dict[int, JSON]:
        """Live topics of the admin chat: thread id -> ForumTopic."""
        return dict(self._topics.get(self.admin_chat_id, {}))

    @property
    def pending_updates(self) -> list[JSON]:
        return list(self._updates)

    # ---- recording ---------------------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[Call]:
        return [c for c in self._calls if method is None or c.method.lower() == method.lower()]

    def sent(self, chat_id: int | None = None, thread_id: int | None = None) -> list[SentMessage]:
        return [
            s for s in self._sent
            if (chat_id is None or s.chat_id == chat_id)
            and (thread_id is None or s.thread_id == thread_id)
        ]  # fmt: skip

    async def wait_for_sent(
        self, predicate: Callable[[SentMessage], bool] | None = None, timeout: float = 5.0
    ) -> SentMessage:
        """The first sent message (already sent or arriving) that matches."""
        return await self._wait(
            lambda: next((s for s in self._sent if predicate is None or predicate(s)), None),
            timeout, "a sent message matching the predicate",
        )  # fmt: skip

    async def wait_for_call(
        self, method: str, predicate: Callable[[Call], bool] | None = None, timeout: float = 5.0
    ) -> Call:
        return await self._wait(
            lambda: next((c for c in self.calls(method) if predicate is None or predicate(c)), None),
            timeout, f"a {method} call",
        )  # fmt: skip

    async def _wait(self, find: Callable[[], T | None], timeout: float, what: str) -> T:
        deadline = asyncio.get_running_loop().time() + timeout
        while (found := find()) is None:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                sent = [(s.chat_id, s.message_id, s.text) for s in self._sent]
                raise AssertionError(f"waited {timeout}s for {what}; sent so far: {sent}")
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                pass
        return found

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # ---- playing the human admin -------------------------------------------------------------

    async def admin_text(
        self, text: str, reply_to: MessageRef | None = None, thread_id: int | None = None
    ) -> Injected:
        return await self._admin_message({"text": text}, reply_to, thread_id)

    async def admin_command(self, command: str, thread_id: int | None = None) -> Injected:
        entity = {"type": "bot_command", "offset": 0, "length": len(command.split()[0])}
        return await self._admin_message({"text": command, "entities": [entity]}, None, thread_id)

    async def admin_photo(
        self, jpeg: bytes, caption: str | None = None,
        reply_to: MessageRef | None = None, thread_id: int | None = None,
    ) -> Injected:  # fmt: skip
        fields = {"photo": self._photo_sizes(self.add_file("photo", jpeg)), "caption": caption}
        return await self._admin_message(fields, reply_to, thread_id)

    async def admin_voice(
        self, ogg: bytes, duration: int,
        reply_to: MessageRef | None = None, thread_id: int | None = None,
    ) -> Injected:  # fmt: skip
        voice = self._media_json(self.add_file("voice", ogg), {"duration": duration})
        return await self._admin_message({"voice": voice}, reply_to, thread_id)

    async def admin_audio(
        self, data: bytes, duration: int, filename: str, mime_type: str = "audio/mpeg",
        caption: str | None = None, reply_to: MessageRef | None = None,
        thread_id: int | None = None, size: int | None = None,
    ) -> Injected:  # fmt: skip
        stored = self.add_file("audio", data, filename=filename, mime_type=mime_type, size=size)
        audio = self._media_json(stored, {"duration": duration})
        return await self._admin_message({"audio": audio, "caption": caption}, reply_to, thread_id)

    async def admin_document(
        self, data: bytes, filename: str, caption: str | None = None,
        reply_to: MessageRef | None = None, thread_id: int | None = None, size: int | None = None,
    ) -> Injected:  # fmt: skip
        doc = self._media_json(self.add_file("document", data, filename=filename, size=size), {})
        return await self._admin_message({"document": doc, "caption": caption}, reply_to, thread_id)

    async def private_command(self, user: JSON, command: str) -> Injected:
        """A Telegram user (not necessarily the admin) sends the bot a command in their private
        chat with it, e.g. `/link 12345678`."""
        chat = {"id": user["id"], "type": "private", "first_name": user["first_name"]}
        entity = {"type": "bot_command", "offset": 0, "length": len(command.split()[0])}
        fields = {"text": command, "entities": [entity]}
        return await self.push_update(
            {"message": dict(self._new_message(chat, user, None, fields))}
        )

    async def admin_edit(self, message: MessageRef, new_text: str) -> Injected:
        msg = self._resolve(message)
        if msg["from"]["id"] != self.admin_user["id"] or "text" not in msg:
            raise ValueError("the admin can only edit their own text messages")
        msg.update(text=new_text, edit_date=int(time.time()))
        return await self.push_update({"edited_message": dict(msg)})

    async def admin_button(
        self, sent_message: MessageRef, callback_data: str, user: JSON | None = None
    ) -> Injected:
        """Press a button under a bot message in the admin chat (as the admin, or `user`)."""
        query_id = str(secrets.randbelow(10**18) + 10**18)
        self._callbacks.add(query_id)
        query = {
            "id": query_id, "from": user or self.admin_user,
            "message": dict(self._resolve(sent_message)),
            "chat_instance": "-4412376528317411521", "data": callback_data,
        }  # fmt: skip
        return await self.push_update({"callback_query": query})

    async def push_update(self, payload: JSON) -> Injected:
        """Deliver any update (one key besides update_id): queue it, or POST it to the webhook."""
        update = {"update_id": next(self._update_ids), **payload}
        kind = next(iter(payload))
        allowed = self._allowed_updates
        if (kind not in allowed) if allowed else (kind in NOT_BY_DEFAULT):
            return Injected(update, delivered=False)
        if self.webhook:
            if self._flushing:  # earlier updates go first
                await asyncio.wait({self._flushing})
            return Injected(update, await self._post_webhook(update))
        self._updates.append(update)
        self._wake_poller("update")
        return Injected(update)

    async def member_text(
        self,
        user: JSON,
        text: str,
        reply_to: MessageRef | None = None,
        thread_id: int | None = None,
    ) -> Injected:
        """Another member of the admin group (an operator's own account, or a stranger) writes
        there; a text starting with "/" is a command."""
        fields: JSON = {"text": text}
        if text.startswith("/"):
            fields["entities"] = [
                {"type": "bot_command", "offset": 0, "length": len(text.split()[0])}
            ]
        return await self._admin_message(fields, reply_to, thread_id, sender=user)

    async def member_photo(
        self, user: JSON, jpeg: bytes, caption: str | None = None, thread_id: int | None = None
    ) -> Injected:
        """A member of the admin group (not necessarily the admin) sends a photo there."""
        fields = {"photo": self._photo_sizes(self.add_file("photo", jpeg)), "caption": caption}
        return await self._admin_message(fields, None, thread_id, sender=user)

    async def _admin_message(
        self,
        fields: JSON,
        reply_to: MessageRef | None,
        thread_id: int | None,
        sender: JSON | None = None,
    ) -> Injected:
        chat = self._chat_json(self.admin_chat_id)
        reply = self._resolve(reply_to) if reply_to is not None else None
        if thread_id is None and reply is not None and reply.get("is_topic_message"):
            thread_id = reply["message_thread_id"]
        topic = thread_id if self.forum else None
        if reply is None and topic is not None:
            reply = self._messages[chat["id"]].get(topic)  # the topic's service message
        fields["reply_to_message"] = _without_reply(reply)
        msg = self._new_message(chat, sender or self.admin_user, topic, fields)
        if topic is None and reply is not None and chat["type"] == "supergroup":
            # A reply outside topics starts a reply thread: message_thread_id without
            # is_topic_message, and sending to that "thread" fails (message thread not found).
            msg["message_thread_id"] = reply.get("message_thread_id", reply["message_id"])
        return await self.push_update({"message": dict(msg)})

    def _resolve(self, ref: MessageRef) -> JSON:
        """A message of the admin chat from a SentMessage / aiogram Message, Injected, dict or id."""
        if isinstance(ref, int):
            message_id = ref
        elif isinstance(ref, dict):
            message_id = ref["message_id"]
        elif isinstance(ref, Injected):
            message_id = ref.message["message_id"]
        else:
            message_id = ref.message_id
        try:
            return self._messages[self.admin_chat_id][message_id]
        except KeyError:
            raise ValueError(f"no message {message_id} in the admin chat") from None

    async def _post_webhook(self, update: JSON) -> int | None:
        assert self.webhook is not None and self._http is not None
        headers = {"Content-Type": "application/json"}
        if self.webhook.get("secret_token"):
            headers["X-Telegram-Bot-Api-Secret-Token"] = self.webhook["secret_token"]
        try:
            async with self._http.post(
                self.webhook["url"], data=json.dumps(update, ensure_ascii=False).encode(),
                headers=headers, timeout=ClientTimeout(total=10),
            ) as resp:  # fmt: skip
                await resp.read()
        except (ClientError, TimeoutError) as e:
            self.webhook_errors.append(f"Connection failed: {type(e).__name__}")
            return None
        if not 200 <= resp.status < 300:
            self.webhook_errors.append(
                f"Wrong response from the webhook: {resp.status} {resp.reason}"
            )
        return resp.status

    # ---- HTTP --------------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        try:
            params, files = await _read_params(request)
        except web.HTTPRequestEntityTooLarge:
            return _error(TelegramError(413, "Request Entity Too Large"))
        call = Call(method, params, files)
        self._calls.append(call)
        self._notify()
        response = await self._answer(request, method.lower(), call)
        call.status = response.status
        return response

    async def _answer(self, request: web.Request, key: str, call: Call) -> web.StreamResponse:
        if self._outage:
            return web.Response(status=502, text=NGINX_502, content_type="text/html")
        fault = self._take_fault(key)
        if fault and fault.kind != "drop_after":
            return await _fault_response(request, fault)
        if request.match_info["token"] != self.token:
            return _error(TelegramError(401, "Unauthorized"))
        handler = self._methods.get(key)
        if handler is None:
            return _error(TelegramError(404, "Not Found"))
        try:
            result = await handler(call.params, call.files)
        except TelegramError as e:
            response = _error(e)
        else:
            response = web.json_response({"ok": True, "result": result}, dumps=_dumps)
        if fault:
            await _drop(request)
        return response

    async def _download(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        self._calls.append(Call("download", {"file_path": path}, {}))
        if self._outage:
            return web.Response(status=502, text=NGINX_502, content_type="text/html")
        if fault := self._take_fault("download"):
            return await _fault_response(request, fault)
        stored = next((f for f in self._files.values() if f.file_path == path), None)
        if request.match_info["token"] != self.token or stored is None:
            return _error(TelegramError(404, "Not Found"))
        return web.Response(body=stored.data, content_type="application/octet-stream")

    def _take_fault(self, key: str) -> _Fault | None:
        for name in (key, "*"):
            if self._faults.get(name):
                return self._faults[name].pop(0)
        return None

    # ---- methods -----------------------------------------------------------------------------

    async def _get_me(self, p: JSON, files: dict[str, Upload]) -> JSON:
        return self.bot_user

    async def _get_chat(self, p: JSON, files: dict[str, Upload]) -> JSON:
        # A ChatFullInfo: the chat plus the fields Telegram always sends with it.
        gifts = {"unlimited_gifts": True, "limited_gifts": True, "unique_gifts": True,
                 "premium_subscription": True, "gifts_from_channels": True}  # fmt: skip
        return {**self._chat(p), "accent_color_id": 0, "max_reaction_count": 11,
                "accepted_gift_types": gifts}  # fmt: skip

    async def _get_updates(self, p: JSON, files: dict[str, Upload]) -> list[JSON]:
        if self.webhook:
            raise TelegramError(409, "Conflict: can't use getUpdates method while webhook is "
                                     "active; use deleteWebhook to delete the webhook first")  # fmt: skip
        if isinstance(p.get("allowed_updates"), list):
            self._allowed_updates = p["allowed_updates"]
        offset = p.get("offset")
        if isinstance(offset, int) and offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        elif isinstance(offset, int) and offset < 0:
            self._updates = self._updates[offset:]
        limit = min(max(int(p.get("limit") or 100), 1), 100)
        self._wake_poller("conflict")
        if not self._updates and self.long_poll and float(p.get("timeout") or 0) > 0:
            waiter = self._poll_waiter = asyncio.get_running_loop().create_future()
            try:
                done, _ = await asyncio.wait({waiter}, timeout=float(p["timeout"]))
            finally:
                waiter.cancel()
                if self._poll_waiter is waiter:
                    self._poll_waiter = None
            if done and waiter.result() in ("conflict", "webhook"):
                raise TelegramError(409, "Conflict: terminated by other getUpdates request; "
                                         "make sure that only one bot instance is running")  # fmt: skip
        return self._updates[:limit]

    def _wake_poller(self, reason: str) -> None:
        if self._poll_waiter is not None and not self._poll_waiter.done():
            self._poll_waiter.set_result(reason)

    async def _set_webhook(self, p: JSON, files: dict[str, Upload]) -> bool:
        url, secret = p.get("url") or "", p.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise bad("secret token contains unallowed characters")
        if url and urlsplit(url).scheme not in ("http", "https"):
            raise bad("bad webhook: An HTTPS URL must be provided for webhook")
        if p.get("drop_pending_updates"):
            self._updates.clear()
        if isinstance(p.get("allowed_updates"), list):
            self._allowed_updates = p["allowed_updates"]
        self.webhook = {
            "url": url, "secret_token": secret, "max_connections": p.get("max_connections", 40),
            "drop_pending_updates": bool(p.get("drop_pending_updates")),
        } if url else None  # fmt: skip
        if self.webhook:
            self._wake_poller("webhook")
            if self._updates:  # Telegram delivers what was waiting
                self._flushing = asyncio.create_task(self._flush_to_webhook())
        return True

    async def _flush_to_webhook(self) -> None:
        pending, self._updates = self._updates, []
        for update in pending:
            if self.webhook:
                await self._post_webhook(update)

    async def _delete_webhook(self, p: JSON, files: dict[str, Upload]) -> bool:
        self.webhook = None
        if p.get("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _get_webhook_info(self, p: JSON, files: dict[str, Upload]) -> JSON:
        info: JSON = {"url": "", "has_custom_certificate": False,
                      "pending_update_count": len(self._updates)}  # fmt: skip
        if self.webhook:
            info.update(url=self.webhook["url"], max_connections=self.webhook["max_connections"],
                        ip_address="127.0.0.1")  # fmt: skip
            if self._allowed_updates:
                info["allowed_updates"] = self._allowed_updates
            if self.webhook_errors:
                info.update(
                    last_error_date=int(time.time()), last_error_message=self.webhook_errors[-1]
                )
        return info

    async def _send(self, p: JSON, files: dict[str, Upload], kind: str | None = None) -> JSON:
        method = f"send{(kind or 'message').capitalize()}"
        chat = self._chat(p)
        reply = self._reply_target(chat["id"], p)
        thread_id = self._thread(
            chat, p.get("message_thread_id") or (reply or {}).get("message_thread_id")
        )
        markup = self._markup(p)
        fields: JSON = {"reply_to_message": _without_reply(reply), "reply_markup": markup}
        stored = None
        if kind is None:
            text = self._format(p.get("text"), p.get("parse_mode"), 4096, "message is too long")
            if not text.strip():
                raise bad("message text is empty")
            fields["text"] = text
        else:
            stored = self._media_in(kind, p, files)
            if kind == "voice" and not _voice_format(stored.data):
                # Telegram plays OGG/Opus, MP3 and M4A as voice notes; anything else arrives as
                # a plain file (the client shows a document, not a voice message).
                kind = stored.kind = "document"
            media = self._photo_sizes(stored) if kind == "photo" else self._media_json(stored, p)
            caption = self._format(
                p.get("caption"), p.get("parse_mode"), 1024, "message caption is too long"
            )
            fields.update({kind: media, "caption": caption or None})
        msg = self._new_message(chat, self.bot_user, thread_id, fields)
        text_sent = p.get("text") if kind is None else p.get("caption")
        self._sent.append(SentMessage(
            chat["id"], msg["message_id"], method, thread_id, text_sent, p.get("parse_mode"),
            markup, (reply or {}).get("message_id"), kind, stored, msg,
        ))  # fmt: skip
        self._notify()
        return msg

    async def _edit_message_text(self, p: JSON, files: dict[str, Upload]) -> JSON:
        chat = self._chat(p)
        msg = self._messages.get(chat["id"], {}).get(p.get("message_id"))  # type: ignore[arg-type]
        if msg is None:
            raise bad("message to edit not found")
        if msg["from"]["id"] != self.bot_user["id"]:
            raise bad("message can't be edited")
        if "text" not in msg:
            raise bad("there is no text in the message to edit")
        text = self._format(p.get("text"), p.get("parse_mode"), 4096, "message is too long")
        markup = self._markup(p)
        if text == msg["text"] and markup == msg.get("reply_markup"):
            raise bad("message is not modified: specified new message content and reply markup "
                      "are exactly the same as a current content and reply markup of the message")  # fmt: skip
        msg.update(text=text, edit_date=int(time.time()))
        msg.pop("reply_markup", None)  # no reply_markup in the edit = keyboard removed
        if markup:
            msg["reply_markup"] = markup
        for sent in self.sent(chat["id"]):
            if sent.message_id == msg["message_id"]:
                sent.edits.append(sent.text or "")
                sent.text, sent.parse_mode, sent.reply_markup = (
                    p["text"],
                    p.get("parse_mode"),
                    markup,
                )
        self._notify()
        return msg

    async def _delete_message(self, p: JSON, files: dict[str, Upload]) -> bool:
        chat = self._chat(p)
        if self._messages.get(chat["id"], {}).pop(p.get("message_id"), None) is None:  # type: ignore[arg-type]
            raise bad("message to delete not found")
        for sent in self.sent(chat["id"]):
            sent.deleted = sent.deleted or sent.message_id == p["message_id"]
        return True

    async def _send_chat_action(self, p: JSON, files: dict[str, Upload]) -> bool:
        self._chat(p)
        return True

    async def _answer_callback_query(self, p: JSON, files: dict[str, Upload]) -> bool:
        query_id = p.get("callback_query_id")
        if query_id not in self._callbacks:
            raise bad("query is too old and response timeout expired or query ID is invalid")
        self._callbacks.discard(query_id)
        self.answered_callbacks[query_id] = p
        return True

    async def _set_message_reaction(self, p: JSON, files: dict[str, Upload]) -> bool:
        chat = self._chat(p)
        if p.get("message_id") not in self._messages.get(chat["id"], {}):
            raise bad("message to react not found")
        reaction = p.get("reaction") or []
        if any(r.get("type") == "emoji" and r.get("emoji") not in REACTIONS for r in reaction):
            raise bad("REACTION_INVALID")
        self.reactions[(chat["id"], p["message_id"])] = reaction
        return True

    async def _create_forum_topic(self, p: JSON, files: dict[str, Upload]) -> JSON:
        chat = self._chat(p)
        if not chat.get("is_forum"):
            raise bad("the chat is not a forum")
        name = p.get("name") or ""
        if not 1 <= len(name) <= 128:
            raise bad("TOPIC_TITLE_EMPTY" if not name else "TOPIC_TITLE_INVALID")
        topic = {"name": name, "icon_color": p.get("icon_color", 7322096)}
        service = self._new_message(chat, self.bot_user, None, {"forum_topic_created": dict(topic)})
        topic["message_thread_id"] = service["message_thread_id"] = service["message_id"]
        self._topics.setdefault(chat["id"], {})[service["message_id"]] = topic
        return topic

    async def _delete_forum_topic(self, p: JSON, files: dict[str, Upload]) -> bool:
        chat = self._chat(p)
        self._thread(chat, p.get("message_thread_id"))
        self.delete_topic(p["message_thread_id"], chat["id"])
        return True

    async def _get_file(self, p: JSON, files: dict[str, Upload]) -> JSON:
        stored = self._files.get(p.get("file_id") or "")
        if stored is None:
            raise bad("invalid file_id")
        if stored.size > MAX_DOWNLOAD:
            raise bad("file is too big")
        return {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                "file_size": stored.size, "file_path": stored.file_path}  # fmt: skip

    # ---- building blocks ---------------------------------------------------------------------

    def _chat(self, p: JSON) -> JSON:
        chat_id = p.get("chat_id")
        if chat_id is None or chat_id == "":
            raise bad("chat_id is empty")
        if not isinstance(chat_id, int):
            raise bad("chat not found")
        if chat_id in self.unreachable:
            raise TelegramError(403, "Forbidden: bot was blocked by the user")
        return self._chat_json(chat_id)

    def _chat_json(self, chat_id: int) -> JSON:
        if chat_id > 0:
            user = self.admin_user if chat_id == self.admin_user["id"] else {"first_name": "User"}
            return {"id": chat_id, "type": "private", "first_name": user["first_name"],
                    **({"username": user["username"]} if "username" in user else {})}  # fmt: skip
        chat: JSON = {"id": chat_id, "type": "supergroup", "title": self.chat_title}
        if chat_id == self.admin_chat_id and self.forum:
            chat["is_forum"] = True
        return chat

    def _thread(self, chat: JSON, thread_id: Any) -> int | None:
        if thread_id is None or not chat.get("is_forum"):
            return None  # outside forums Telegram ignores the thread id
        if thread_id not in self._topics.get(chat["id"], {}):
            raise bad("message thread not found")
        return int(thread_id)

    def _reply_target(self, chat_id: int, p: JSON) -> JSON | None:
        params = p.get("reply_parameters")
        params = params if isinstance(params, dict) else {}
        message_id = params.get("message_id", p.get("reply_to_message_id"))
        if message_id is None:
            return None
        target = self._messages.get(chat_id, {}).get(message_id)
        allow = params.get("allow_sending_without_reply", p.get("allow_sending_without_reply"))
        if target is None and not allow:
            raise bad("message to be replied not found")
        return target

    def _markup(self, p: JSON) -> JSON | None:
        markup = p.get("reply_markup")
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise bad("can't parse reply keyboard markup JSON object")
        for button in (b for row in markup.get("inline_keyboard", []) for b in row):
            data, url = button.get("callback_data"), button.get("url")
            if data is not None and not 1 <= len(data.encode()) <= 64:
                raise bad("BUTTON_DATA_INVALID")
            if url is not None and self.strict_button_urls and not _good_button_url(url):
                raise bad(f"inline keyboard button URL '{url}' is invalid: Wrong HTTP URL")
        return markup if "inline_keyboard" in markup else None  # only inline markup is echoed

    def _format(self, text: Any, parse_mode: Any, limit: int, too_long: str) -> str:
        text = str(text or "")
        plain = html_to_plain(text) if str(parse_mode).lower() == "html" else text
        if len(plain.encode("utf-16-le")) // 2 > limit:
            raise bad(too_long)
        return plain

    def _media_in(self, kind: str, p: JSON, files: dict[str, Upload]) -> StoredFile:
        if kind in files:
            up = files[kind]
            if not up.data:
                raise bad("file must be non-empty")
            stored = self.add_file(kind, up.data, filename=up.filename)
            stored.content_type = up.content_type
            return stored
        ref = p.get(kind)
        if not ref:
            raise bad(f"there is no {kind} in the request")
        if ref not in self._files:
            raise bad("wrong file identifier/HTTP URL specified")
        return self._files[ref]

    def _photo_sizes(self, stored: StoredFile) -> list[JSON]:
        thumb = self.add_file("photo", stored.data)
        return [
            {"file_id": f.file_id, "file_unique_id": f.file_unique_id, "file_size": f.size,
             "width": w, "height": h}
            for f, w, h in ((thumb, 320, 240), (stored, 1280, 960))
        ]  # fmt: skip

    def _media_json(self, stored: StoredFile, p: JSON) -> JSON:
        media: JSON = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                       "file_size": stored.size, "mime_type": stored.mime_type}  # fmt: skip
        if stored.kind in ("voice", "audio"):
            media["duration"] = int(p.get("duration") or 0)
        if stored.kind in ("audio", "document") and stored.filename:
            media["file_name"] = stored.filename
        media.update({k: p[k] for k in ("performer", "title") if stored.kind == "audio" and k in p})
        return media

    def _new_message(self, chat: JSON, sender: JSON, thread_id: int | None, fields: JSON) -> JSON:
        counter = self._next_id.setdefault(chat["id"], itertools.count(1))
        msg: JSON = {
            "message_id": next(counter),
            "from": sender,
            "chat": chat,
            "date": int(time.time()),
        }
        if thread_id is not None:
            msg.update(message_thread_id=thread_id, is_topic_message=True)
        msg.update({k: v for k, v in fields.items() if v is not None})
        self._messages.setdefault(chat["id"], {})[msg["message_id"]] = msg
        return msg


def _voice_format(data: bytes) -> bool:
    """OGG, MP3 or M4A by their first bytes (what Telegram accepts as a voice note)."""
    return data.startswith((b"OggS", b"ID3", b"\xff\xfb", b"\xff\xf3")) or data[4:8] == b"ftyp"


def _without_reply(message: JSON | None) -> JSON | None:
    """Telegram nests replies one level only."""
    return (
        None if message is None else {k: v for k, v in message.items() if k != "reply_to_message"}
    )


def _good_button_url(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "tg":
        return True
    return parts.scheme in ("http", "https") and "." in (parts.hostname or "")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def _error(e: TelegramError) -> web.Response:
    body: JSON = {"ok": False, "error_code": e.code, "description": e.description}
    if e.retry_after is not None:
        body["parameters"] = {"retry_after": e.retry_after}
    return web.json_response(body, status=e.code, dumps=_dumps)


async def _fault_response(request: web.Request, fault: _Fault) -> web.StreamResponse:
    defaults = {
        "429": f"Too Many Requests: retry after {fault.retry_after}",
        "500": "Internal Server Error",
        "403": "Forbidden: bot was blocked by the user",
        "400": "Bad Request: chat not found",
    }
    if fault.kind == "502_html":
        return web.Response(status=502, text=NGINX_502, content_type="text/html")
    if fault.kind in ("drop", "drop_after"):
        await _drop(request)
    retry_after = fault.retry_after if fault.kind == "429" else None
    return _error(
        TelegramError(int(fault.kind), fault.description or defaults[fault.kind], retry_after)
    )


async def _drop(request: web.Request) -> NoReturn:
    """Close the connection without an answer; aiohttp then cancels this handler."""
    if request.transport is not None:
        request.transport.abort()
    await asyncio.sleep(3600)
    raise AssertionError("unreachable: the handler is cancelled when the connection drops")


async def _read_params(request: web.Request) -> tuple[JSON, dict[str, Upload]]:
    """Query + body (JSON, urlencoded or multipart) -> typed params and uploads."""
    params: JSON = dict(request.query)
    files: dict[str, Upload] = {}
    if request.content_type == "application/json":
        body = await request.json()
        params.update(body if isinstance(body, dict) else {})
    elif request.body_exists:
        for name, value in (await request.post()).items():
            if isinstance(value, web.FileField):
                with value.file:
                    files[name] = Upload(value.filename, value.content_type, value.file.read())
            else:
                params[name] = value
    for name, value in list(params.items()):  # aiogram: photo=attach://<key> + a part <key>
        if isinstance(value, str) and value.startswith("attach://") and value[9:] in files:
            files[name] = files.pop(value[9:])
            del params[name]
    return {name: _coerce(name, value) for name, value in params.items()}, files


def _coerce(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if name in JSON_FIELDS:
        try:
            return json.loads(value)
        except ValueError:
            return value
    if name in INT_FIELDS and re.fullmatch(r"-?\d+", value):
        return int(value)
    if name in BOOL_FIELDS:
        return value.lower() in ("true", "1")
    return value
