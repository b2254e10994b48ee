"""Database models: conversations, their messages, admin sessions and login codes."""

from __future__ import annotations

from tortoise import fields
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

    conversation_id: int

    class Meta:
        table = "message"
        unique_together = (("conversation", "seq"), ("conversation", "client_id"))


class AdminSession(Model):
    """A logged-in operator session; the cookie holds the token, the row only its hash."""

    token_hash = fields.CharField(max_length=64, primary_key=True)
    csrf_token = fields.CharField(max_length=64)
    created_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()

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

    class Meta:
        table = "login_code"
