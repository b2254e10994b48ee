"""Database models: conversations, messages, admin sessions, login codes, Telegram, self-tests,
the audit trail, saved replies, settings."""

from __future__ import annotations

from tortoise import fields
from tortoise.contrib.postgres.fields import ArrayField
from tortoise.models import Model


class Conversation(Model):
    """One visitor's thread with the operator, addressed publicly by its CID."""

    id = fields.BigIntField(primary_key=True)
    cid = fields.CharField(max_length=64, unique=True)
    visitor_name = fields.CharField(max_length=64)
    token_hash = fields.CharField(max_length=64, unique=True)
    created_at = fields.DatetimeField()
    last_message_at = fields.DatetimeField(null=True)
    # Oldest visitor message the operator has not answered yet; drives the waiting list's order.
    waiting_since = fields.DatetimeField(null=True)
    last_seq = fields.IntField(default=0)
    unread_admin = fields.IntField(default=0)
    last_preview = fields.CharField(max_length=140, default="")
    last_role = fields.CharField(max_length=16, default="")
    locale = fields.CharField(max_length=8, default="tr")
    # Self-test conversations are never shown to the operator.
    synthetic = fields.BooleanField(default=False)
    # Closed by the operator; a new visitor message opens it again.
    closed_at = fields.DatetimeField(null=True)
    # Receipts: how far each side has received / seen the other side's messages (by seq).
    visitor_delivered_seq = fields.IntField(default=0)
    visitor_seen_seq = fields.IntField(default=0)
    admin_delivered_seq = fields.IntField(default=0)
    admin_seen_seq = fields.IntField(default=0)
    # Keyed hash of the address that started it: the per-address budget and blocks use it.
    client_hash = fields.CharField(max_length=64, default="")
    # Blocked by the operator: the visitor can read but no longer write.
    blocked_at = fields.DatetimeField(null=True)
    # The widget: the host site's page the visitor is on, and who the host site says they are
    # (set only from a hash signed with WIDGET_IDENTITY_SECRET; empty otherwise).
    host_url = fields.CharField(max_length=1024, default="")
    host_title = fields.CharField(max_length=200, default="")
    external_id = fields.CharField(max_length=128, default="")
    visitor_email = fields.CharField(max_length=254, default="")
    # Assignment (app/chat/assignment.py): the operator answering it (NULL: unassigned), since
    # when, and the note of the transfer that gave it to them (operators only, never the visitor).
    assigned_operator_id = fields.BigIntField(null=True)
    assigned_at = fields.DatetimeField(null=True)
    assign_note = fields.CharField(max_length=500, default="")
    assign_note_by = fields.CharField(max_length=64, default="")

    messages: fields.ReverseRelation[Message]

    class Meta:
        table = "conversation"


class Message(Model):
    """A message in a conversation; `seq` orders it and `client_id` makes retries idempotent."""

    id = fields.BigIntField(primary_key=True)
    conversation: fields.ForeignKeyRelation[Conversation] = fields.ForeignKeyField(
        "models.Conversation", related_name="messages", on_delete=fields.CASCADE
    )
    seq = fields.IntField()
    client_id = fields.CharField(max_length=64)
    role = fields.CharField(max_length=16)
    kind = fields.CharField(max_length=16, default="text")
    text = fields.TextField()
    source = fields.CharField(max_length=16, default="web")
    created_at = fields.DatetimeField()
    edited_at = fields.DatetimeField(null=True)
    deleted_at = fields.DatetimeField(null=True)
    # A photo or audio message's attachment: its object in media storage (a server-made name),
    # the content type our own check found, and what the bubble shows. NULL for text.
    media_key = fields.CharField(max_length=128, null=True, unique=True)
    media_type = fields.CharField(max_length=64, default="")
    media_size = fields.IntField(default=0)
    media_width = fields.IntField(default=0)
    media_height = fields.IntField(default=0)
    media_duration_ms = fields.IntField(default=0)
    # The sender's file name: display text only, never a path.
    media_name = fields.CharField(max_length=200, default="")
    # Who wrote an operator message (NULL for the visitor's, the system's, and operator messages
    # from before attribution), and their name when they wrote it: renaming an operator later
    # does not rewrite the history the visitor saw. A foreign key in the schema (migration 14).
    operator_id = fields.BigIntField(null=True)
    author_name = fields.CharField(max_length=40, default="")

    conversation_id: int

    class Meta:
        table = "message"
        unique_together = (("conversation", "seq"), ("conversation", "client_id"))


class Operator(Model):
    """Someone who answers visitors: the owner (made from ADMIN_PASSWORD) or an invited operator.

    Messages, assignments and audit entries point here by `id`; a deactivated operator keeps
    the row (and their name on what they wrote) but can no longer sign in.
    """

    id = fields.BigIntField(primary_key=True)
    name = fields.CharField(max_length=40)
    # The name folded (case, width), unique: "Ayşe" and "AYŞE" are one operator.
    name_key = fields.CharField(max_length=40, unique=True)
    colour = fields.CharField(max_length=7)
    role = fields.CharField(max_length=16, default="operator")
    # Their own Telegram account: login codes go to its private chat with the bot.
    telegram_user_id = fields.BigIntField(null=True, unique=True)
    password_hash = fields.CharField(max_length=255)
    active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField()
    deactivated_at = fields.DatetimeField(null=True)
    # The code the operator sends the bot to link Telegram (keyed hash), and until when.
    link_code_hash = fields.CharField(max_length=64, default="")
    link_expires_at = fields.DatetimeField(null=True)

    class Meta:
        table = "operator"

    @property
    def initial(self) -> str:
        """The avatar's letter."""
        return self.name[:1].upper()

    @property
    def is_owner(self) -> bool:
        return self.role == "owner"


class OperatorRead(Model):
    """How far one operator has read one conversation (by seq): their own unread counts."""

    id = fields.BigIntField(primary_key=True)
    operator_id = fields.BigIntField()
    conversation_id = fields.BigIntField()
    last_seq = fields.IntField(default=0)

    class Meta:
        table = "operator_read"
        unique_together = (("operator_id", "conversation_id"),)


class OperatorInvite(Model):
    """A one-time, expiring link with which the owner invites an operator."""

    token_hash = fields.CharField(max_length=64, primary_key=True)
    created_by_id = fields.BigIntField()
    created_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)
    # The operator who accepted it, and the invitee's browser (its setup cookie's hash) that
    # may show the Telegram link code after accepting.
    operator_id = fields.BigIntField(null=True)
    setup_hash = fields.CharField(max_length=64, default="")

    class Meta:
        table = "operator_invite"


class AdminSession(Model):
    """A logged-in operator session; the cookie holds the token, the row only its hash."""

    token_hash = fields.CharField(max_length=64, primary_key=True)
    csrf_token = fields.CharField(max_length=64)
    created_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    # Whose session (NULL only in rows from before operators existed; the owner's). A foreign
    # key to operator in the schema (migration 9); an id here, like the chat's other links.
    operator_id = fields.BigIntField(null=True)

    class Meta:
        table = "admin_session"


class LoginCode(Model):
    """A one-time login code, stored hashed, single use, with a try budget."""

    id = fields.BigIntField(primary_key=True)
    # The browser that asked for the code; only it can redeem it.
    challenge_hash = fields.CharField(max_length=64, unique=True)
    code_hash = fields.CharField(max_length=64)
    created_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    attempts = fields.IntField(default=0)
    used_at = fields.DatetimeField(null=True)
    # The Telegram outbox row that carries the code (empty when it went to the log), so the
    # login page can tell when Telegram is not delivering it.
    delivery_key = fields.CharField(max_length=128, default="")
    # The operator the code signs in.
    operator_id = fields.BigIntField(null=True)

    class Meta:
        table = "login_code"


class TotpFactor(Model):
    """The operator's authenticator app (RFC 6238): a second factor that needs no Telegram."""

    id = fields.BigIntField(primary_key=True)
    # Base32, as the app needs it; a row is pending until a code from the app confirms it.
    secret = fields.CharField(max_length=64)
    created_at = fields.DatetimeField()
    confirmed_at = fields.DatetimeField(null=True)
    # The newest time step a code was accepted for: no code is accepted twice.
    last_step = fields.BigIntField(default=0)
    operator_id = fields.BigIntField(null=True)

    class Meta:
        table = "totp_factor"


class RecoveryCode(Model):
    """A one-time recovery code for when neither Telegram nor the authenticator app is at hand."""

    id = fields.BigIntField(primary_key=True)
    code_hash = fields.CharField(max_length=64, unique=True)
    created_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)
    operator_id = fields.BigIntField(null=True)

    class Meta:
        table = "recovery_code"


class VisitorBlock(Model):
    """An address the operator blocked: no new conversation starts from it."""

    client_hash = fields.CharField(max_length=64, primary_key=True)
    conversation_id = fields.BigIntField(null=True)
    created_at = fields.DatetimeField()

    class Meta:
        table = "visitor_block"


class Lease(Model):
    """A named leadership lease (app/core/lease.py): one holder process at a time."""

    name = fields.CharField(max_length=64, primary_key=True)
    holder = fields.CharField(max_length=128)
    expires_at = fields.DatetimeField()

    class Meta:
        table = "lease"


class RateWindow(Model):
    """A rate budget's moving window for one key, in PostgreSQL when there is no Redis
    (app/core/ratelimit.py): the times of the counted events still inside the window."""

    key = fields.CharField(max_length=100, primary_key=True)
    # Seconds since the epoch, by the database's clock; at most the budget's limit of them.
    hits = ArrayField(element_type="double precision")
    # The newest hit plus the window: past it the row counts nothing and is swept.
    expires_at = fields.DatetimeField()

    class Meta:
        table = "rate_window"


class TgOutbox(Model):
    """A send to Telegram, stored in the same transaction as what caused it, delivered by a worker.

    Items of one lane (a conversation, or "system") go out strictly in id order.
    """

    id = fields.BigIntField(primary_key=True)
    lane = fields.CharField(max_length=32)
    conversation_id = fields.BigIntField(null=True)
    kind = fields.CharField(max_length=16, default="text")
    # For kind "message": the message (by seq) rendered when it is sent, so edits and deletions
    # made before delivery are honoured.
    ref_seq = fields.IntField(null=True)
    text = fields.TextField(default="")
    thread_id = fields.BigIntField(null=True)
    reply_to = fields.BigIntField(null=True)
    dedupe_key = fields.CharField(max_length=128, unique=True)
    status = fields.CharField(max_length=16, default="pending")
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField()
    created_at = fields.DatetimeField()
    sent_at = fields.DatetimeField(null=True)
    tg_message_id = fields.BigIntField(null=True)
    last_error = fields.TextField(default="")
    # A private chat to send to instead of the admin chat (an operator's login code).
    chat_id = fields.BigIntField(null=True)

    class Meta:
        table = "tg_outbox"


class TgLink(Model):
    """Which conversation a message in the Telegram admin chat belongs to (for replies)."""

    id = fields.BigIntField(primary_key=True)
    tg_chat_id = fields.BigIntField()
    tg_message_id = fields.BigIntField()
    conversation_id = fields.BigIntField()

    class Meta:
        table = "tg_link"
        unique_together = (("tg_chat_id", "tg_message_id"),)


class TgTopic(Model):
    """The forum topic of a conversation, when the admin chat is a forum supergroup."""

    conversation_id = fields.BigIntField(primary_key=True)
    tg_chat_id = fields.BigIntField()
    thread_id = fields.BigIntField()

    class Meta:
        table = "tg_topic"


class TgUpdate(Model):
    """An incoming Telegram update, stored before it is handled so it takes effect once."""

    update_id = fields.BigIntField(primary_key=True)
    payload = fields.TextField()
    received_at = fields.DatetimeField()
    processed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "tg_update"


class GoneToken(Model):
    """A visitor token whose conversation was deleted or moved to another device (its hash):
    a page that comes back with it says which, instead of a bare start page. Kept 90 days."""

    token_hash = fields.CharField(max_length=64, primary_key=True)
    reason = fields.CharField(max_length=8)  # "ended" | "moved"
    created_at = fields.DatetimeField(db_index=True)

    class Meta:
        table = "gone_token"


class Handoff(Model):
    """A one-time, expiring link that moves a visitor's conversation to another device."""

    token_hash = fields.CharField(max_length=64, primary_key=True)
    conversation_id = fields.BigIntField()
    created_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)

    class Meta:
        table = "handoff"


class SelfTestSchedule(Model):
    """A daily self-test time (HH:MM in an IANA zone), run by the scheduler while enabled."""

    id = fields.BigIntField(primary_key=True)
    time_hhmm = fields.CharField(max_length=5)
    tz = fields.CharField(max_length=64)
    enabled = fields.BooleanField(default=True)
    created_at = fields.DatetimeField()
    updated_at = fields.DatetimeField()

    class Meta:
        table = "selftest_schedule"


class SelfTestSlot(Model):
    """A scheduled slot claimed by one server process, so each slot runs once in all of them."""

    id = fields.BigIntField(primary_key=True)
    schedule_id = fields.BigIntField()
    slot_at = fields.DatetimeField()
    claimed_at = fields.DatetimeField()
    process = fields.CharField(max_length=128)

    class Meta:
        table = "selftest_slot"
        unique_together = (("schedule_id", "slot_at"),)


class SelfTestRun(Model):
    """One run of every self-test: who started it, how long it took, each check's result."""

    id = fields.BigIntField(primary_key=True)
    trigger = fields.CharField(max_length=16)
    schedule_id = fields.BigIntField(null=True)
    slot_at = fields.DatetimeField(null=True)
    started_at = fields.DatetimeField()
    duration_ms = fields.IntField()
    ok = fields.BooleanField()
    # [{"name", "status", "ms", "detail"}], as JSON text (one column type on both databases).
    results = fields.TextField()

    class Meta:
        table = "selftest_run"


class SelfTestProbe(Model):
    """Scratch rows the Database check writes, reads and deletes in one transaction."""

    id = fields.BigIntField(primary_key=True)
    token = fields.CharField(max_length=64)
    created_at = fields.DatetimeField()

    class Meta:
        table = "selftest_probe"


class AuditEntry(Model):
    """One operator action in the audit trail (app/audit): written once, never edited or deleted.

    The actor is a snapshot (id and name at the time), so an entry still reads right after the
    operator is renamed or removed; the address is kept only as a keyed hash, as everywhere else.
    """

    id = fields.BigIntField(primary_key=True)
    at = fields.DatetimeField()
    # The operator's id once operators are accounts (NULL: the single admin, or nobody known).
    actor_id = fields.BigIntField(null=True)
    actor_name = fields.CharField(max_length=64, default="")
    action = fields.CharField(max_length=32)
    # What it was done to: a CID, an operator's name, a saved reply's shortcut...
    target = fields.CharField(max_length=200, default="")
    # JSON object with the particulars (which messages, the sign-in method, the reason...).
    detail = fields.TextField(default="")
    # Keyed hash of the client address (as Conversation.client_hash); empty when none (Telegram).
    address = fields.CharField(max_length=64, default="")
    surface = fields.CharField(max_length=16)

    class Meta:
        table = "audit_entry"


class Setting(Model):
    """A setting the owner changes in the panel, as JSON text; absent: the environment's value."""

    key = fields.CharField(max_length=64, primary_key=True)
    value = fields.TextField()
    updated_at = fields.DatetimeField()

    class Meta:
        table = "setting"


class SavedReply(Model):
    """A shared snippet the operator inserts by its shortcut (`/kargo`), in Turkish and English."""

    id = fields.BigIntField(primary_key=True)
    # As the operator typed it; `shortcut_key` is its case-folded form (app/replies/service.py),
    # unique, so "Kargo" and "KARGO" are the same shortcut (folding can triple a character).
    shortcut = fields.CharField(max_length=32)
    shortcut_key = fields.CharField(max_length=128, unique=True)
    # At least one of the two is set; empty means "not written in this language".
    text_tr = fields.TextField(default="")
    text_en = fields.TextField(default="")
    created_at = fields.DatetimeField()
    updated_at = fields.DatetimeField()

    class Meta:
        table = "saved_reply"
