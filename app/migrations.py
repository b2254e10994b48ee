"""Schema migrations: one set of files for SQLite and PostgreSQL, applied in order at start-up.

aerich writes dialect-specific SQL, so each step here is written once with a handful of type
placeholders that are filled in per dialect. Every statement is plain DDL both databases accept.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from tortoise.backends.base.client import BaseDBAsyncClient

from app.core.transactions import transaction

log = logging.getLogger("sohbet.migrations")

_TYPES = {
    "sqlite": {
        "pk": "INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL",
        "ts": "TIMESTAMP",
        "bool": "INT",
        # Used on PostgreSQL only; the table exists on SQLite for one schema everywhere.
        "floats": "TEXT",
        "unlogged": "",
    },
    "postgres": {
        "pk": "BIGSERIAL NOT NULL PRIMARY KEY",
        "ts": "TIMESTAMPTZ",
        "bool": "BOOL",
        "floats": "DOUBLE PRECISION[]",
        # No write-ahead log: no disk flush per write; emptied after a crash or on a standby.
        "unlogged": "UNLOGGED",
    },
}


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: Sequence[str]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "initial schema",
        (
            """CREATE TABLE "conversation" (
                "id" {pk},
                "cid" VARCHAR(64) NOT NULL UNIQUE,
                "visitor_name" VARCHAR(64) NOT NULL,
                "token_hash" VARCHAR(64) NOT NULL UNIQUE,
                "created_at" {ts} NOT NULL,
                "last_message_at" {ts},
                "waiting_since" {ts},
                "last_seq" INT NOT NULL DEFAULT 0,
                "unread_admin" INT NOT NULL DEFAULT 0,
                "last_preview" VARCHAR(140) NOT NULL DEFAULT '',
                "last_role" VARCHAR(16) NOT NULL DEFAULT '',
                "locale" VARCHAR(8) NOT NULL DEFAULT 'tr',
                "synthetic" {bool} NOT NULL DEFAULT FALSE
            )""",
            'CREATE INDEX "idx_conversation_waiting" ON "conversation" ("waiting_since")',
            'CREATE INDEX "idx_conversation_last" ON "conversation" ("last_message_at")',
            """CREATE TABLE "message" (
                "id" {pk},
                "conversation_id" BIGINT NOT NULL
                    REFERENCES "conversation" ("id") ON DELETE CASCADE,
                "seq" INT NOT NULL,
                "client_id" VARCHAR(64) NOT NULL,
                "role" VARCHAR(16) NOT NULL,
                "kind" VARCHAR(16) NOT NULL DEFAULT 'text',
                "text" TEXT NOT NULL,
                "source" VARCHAR(16) NOT NULL DEFAULT 'web',
                "created_at" {ts} NOT NULL,
                "edited_at" {ts},
                "deleted_at" {ts},
                CONSTRAINT "uq_message_seq" UNIQUE ("conversation_id", "seq"),
                CONSTRAINT "uq_message_client_id" UNIQUE ("conversation_id", "client_id")
            )""",
            """CREATE TABLE "admin_session" (
                "token_hash" VARCHAR(64) NOT NULL PRIMARY KEY,
                "csrf_token" VARCHAR(64) NOT NULL,
                "created_at" {ts} NOT NULL,
                "expires_at" {ts} NOT NULL
            )""",
            """CREATE TABLE "login_code" (
                "id" {pk},
                "challenge_hash" VARCHAR(64) NOT NULL UNIQUE,
                "code_hash" VARCHAR(64) NOT NULL,
                "created_at" {ts} NOT NULL,
                "expires_at" {ts} NOT NULL,
                "attempts" INT NOT NULL DEFAULT 0,
                "used_at" {ts}
            )""",
            'CREATE INDEX "idx_login_code_created" ON "login_code" ("created_at")',
        ),
    ),
    Migration(
        2,
        "telegram bridge and closing conversations",
        (
            'ALTER TABLE "conversation" ADD COLUMN "closed_at" {ts}',
            """CREATE TABLE "tg_outbox" (
                "id" {pk},
                "lane" VARCHAR(32) NOT NULL,
                "conversation_id" BIGINT,
                "kind" VARCHAR(16) NOT NULL DEFAULT 'text',
                "ref_seq" INT,
                "text" TEXT NOT NULL DEFAULT '',
                "thread_id" BIGINT,
                "reply_to" BIGINT,
                "dedupe_key" VARCHAR(128) NOT NULL UNIQUE,
                "status" VARCHAR(16) NOT NULL DEFAULT 'pending',
                "attempts" INT NOT NULL DEFAULT 0,
                "next_attempt_at" {ts} NOT NULL,
                "created_at" {ts} NOT NULL,
                "sent_at" {ts},
                "tg_message_id" BIGINT,
                "last_error" TEXT NOT NULL DEFAULT ''
            )""",
            'CREATE INDEX "idx_tg_outbox_pending" ON "tg_outbox" ("status", "id")',
            """CREATE TABLE "tg_link" (
                "id" {pk},
                "tg_chat_id" BIGINT NOT NULL,
                "tg_message_id" BIGINT NOT NULL,
                "conversation_id" BIGINT NOT NULL,
                CONSTRAINT "uq_tg_link" UNIQUE ("tg_chat_id", "tg_message_id")
            )""",
            """CREATE TABLE "tg_topic" (
                "conversation_id" BIGINT NOT NULL PRIMARY KEY,
                "tg_chat_id" BIGINT NOT NULL,
                "thread_id" BIGINT NOT NULL
            )""",
            'CREATE INDEX "idx_tg_topic_thread" ON "tg_topic" ("tg_chat_id", "thread_id")',
            """CREATE TABLE "tg_update" (
                "update_id" BIGINT NOT NULL PRIMARY KEY,
                "payload" TEXT NOT NULL,
                "received_at" {ts} NOT NULL,
                "processed_at" {ts}
            )""",
        ),
    ),
    Migration(
        3,
        "self-tests: schedules, claimed slots, run history, probe",
        (
            """CREATE TABLE "selftest_schedule" (
                "id" {pk},
                "time_hhmm" VARCHAR(5) NOT NULL,
                "tz" VARCHAR(64) NOT NULL,
                "enabled" {bool} NOT NULL DEFAULT TRUE,
                "created_at" {ts} NOT NULL,
                "updated_at" {ts} NOT NULL
            )""",
            """CREATE TABLE "selftest_slot" (
                "id" {pk},
                "schedule_id" BIGINT NOT NULL,
                "slot_at" {ts} NOT NULL,
                "claimed_at" {ts} NOT NULL,
                "process" VARCHAR(128) NOT NULL,
                CONSTRAINT "uq_selftest_slot" UNIQUE ("schedule_id", "slot_at")
            )""",
            """CREATE TABLE "selftest_run" (
                "id" {pk},
                "trigger" VARCHAR(16) NOT NULL,
                "schedule_id" BIGINT,
                "slot_at" {ts},
                "started_at" {ts} NOT NULL,
                "duration_ms" INT NOT NULL,
                "ok" {bool} NOT NULL,
                "results" TEXT NOT NULL
            )""",
            """CREATE TABLE "selftest_probe" (
                "id" {pk},
                "token" VARCHAR(64) NOT NULL,
                "created_at" {ts} NOT NULL
            )""",
        ),
    ),
    Migration(
        4,
        "media attachments on messages",
        (
            'ALTER TABLE "message" ADD COLUMN "media_key" VARCHAR(128)',
            'ALTER TABLE "message" ADD COLUMN "media_type" VARCHAR(64) NOT NULL DEFAULT \'\'',
            'ALTER TABLE "message" ADD COLUMN "media_size" INT NOT NULL DEFAULT 0',
            'ALTER TABLE "message" ADD COLUMN "media_width" INT NOT NULL DEFAULT 0',
            'ALTER TABLE "message" ADD COLUMN "media_height" INT NOT NULL DEFAULT 0',
            'ALTER TABLE "message" ADD COLUMN "media_duration_ms" INT NOT NULL DEFAULT 0',
            'ALTER TABLE "message" ADD COLUMN "media_name" VARCHAR(200) NOT NULL DEFAULT \'\'',
            'CREATE UNIQUE INDEX "uq_message_media_key" ON "message" ("media_key")',
        ),
    ),
    Migration(
        5,
        "receipts and device handoff",
        (
            'ALTER TABLE "conversation" ADD COLUMN "visitor_delivered_seq" INT NOT NULL DEFAULT 0',
            'ALTER TABLE "conversation" ADD COLUMN "visitor_seen_seq" INT NOT NULL DEFAULT 0',
            'ALTER TABLE "conversation" ADD COLUMN "admin_delivered_seq" INT NOT NULL DEFAULT 0',
            'ALTER TABLE "conversation" ADD COLUMN "admin_seen_seq" INT NOT NULL DEFAULT 0',
            """CREATE TABLE "handoff" (
                "token_hash" VARCHAR(64) NOT NULL PRIMARY KEY,
                "conversation_id" BIGINT NOT NULL,
                "created_at" {ts} NOT NULL,
                "expires_at" {ts} NOT NULL,
                "used_at" {ts}
            )""",
        ),
    ),
    Migration(
        6,
        "security: client address hash, visitor blocks, leadership leases",
        (
            """ALTER TABLE "conversation"
                ADD COLUMN "client_hash" VARCHAR(64) NOT NULL DEFAULT ''""",
            'ALTER TABLE "conversation" ADD COLUMN "blocked_at" {ts}',
            """CREATE INDEX "idx_conversation_client"
                ON "conversation" ("client_hash", "created_at")""",
            """CREATE TABLE "visitor_block" (
                "client_hash" VARCHAR(64) NOT NULL PRIMARY KEY,
                "conversation_id" BIGINT,
                "created_at" {ts} NOT NULL
            )""",
            """CREATE TABLE "lease" (
                "name" VARCHAR(64) NOT NULL PRIMARY KEY,
                "holder" VARCHAR(128) NOT NULL,
                "expires_at" {ts} NOT NULL
            )""",
        ),
    ),
    Migration(
        7,
        "authenticator app and recovery codes",
        (
            """ALTER TABLE "login_code"
                ADD COLUMN "delivery_key" VARCHAR(128) NOT NULL DEFAULT ''""",
            """CREATE TABLE "totp_factor" (
                "id" {pk},
                "secret" VARCHAR(64) NOT NULL,
                "created_at" {ts} NOT NULL,
                "confirmed_at" {ts},
                "last_step" BIGINT NOT NULL DEFAULT 0
            )""",
            """CREATE TABLE "recovery_code" (
                "id" {pk},
                "code_hash" VARCHAR(64) NOT NULL UNIQUE,
                "created_at" {ts} NOT NULL,
                "used_at" {ts}
            )""",
        ),
    ),
    Migration(
        8,
        "widget: host page and verified identity",
        (
            """ALTER TABLE "conversation"
                ADD COLUMN "host_url" VARCHAR(1024) NOT NULL DEFAULT ''""",
            """ALTER TABLE "conversation"
                ADD COLUMN "host_title" VARCHAR(200) NOT NULL DEFAULT ''""",
            """ALTER TABLE "conversation"
                ADD COLUMN "external_id" VARCHAR(128) NOT NULL DEFAULT ''""",
            """ALTER TABLE "conversation"
                ADD COLUMN "visitor_email" VARCHAR(254) NOT NULL DEFAULT ''""",
        ),
    ),
    Migration(
        9,
        "team: operators, invites, and whose sessions, codes and factors",
        (
            """CREATE TABLE "operator" (
                "id" {pk},
                "name" VARCHAR(40) NOT NULL,
                "name_key" VARCHAR(40) NOT NULL UNIQUE,
                "colour" VARCHAR(7) NOT NULL,
                "role" VARCHAR(16) NOT NULL DEFAULT 'operator',
                "telegram_user_id" BIGINT UNIQUE,
                "password_hash" VARCHAR(255) NOT NULL,
                "active" {bool} NOT NULL DEFAULT TRUE,
                "created_at" {ts} NOT NULL,
                "deactivated_at" {ts},
                "link_code_hash" VARCHAR(64) NOT NULL DEFAULT '',
                "link_expires_at" {ts}
            )""",
            """CREATE TABLE "operator_invite" (
                "token_hash" VARCHAR(64) NOT NULL PRIMARY KEY,
                "created_by_id" BIGINT NOT NULL,
                "created_at" {ts} NOT NULL,
                "expires_at" {ts} NOT NULL,
                "used_at" {ts},
                "operator_id" BIGINT,
                "setup_hash" VARCHAR(64) NOT NULL DEFAULT ''
            )""",
            # Rows from before operators existed are the owner's (filled in at start-up, when
            # the owner is made from ADMIN_PASSWORD).
            """ALTER TABLE "admin_session" ADD COLUMN "operator_id" BIGINT
                REFERENCES "operator" ("id") ON DELETE CASCADE""",
            """ALTER TABLE "login_code" ADD COLUMN "operator_id" BIGINT
                REFERENCES "operator" ("id") ON DELETE CASCADE""",
            """ALTER TABLE "totp_factor" ADD COLUMN "operator_id" BIGINT
                REFERENCES "operator" ("id") ON DELETE CASCADE""",
            """ALTER TABLE "recovery_code" ADD COLUMN "operator_id" BIGINT
                REFERENCES "operator" ("id") ON DELETE CASCADE""",
            'ALTER TABLE "tg_outbox" ADD COLUMN "chat_id" BIGINT',
            """CREATE INDEX "idx_login_code_operator"
                ON "login_code" ("operator_id", "created_at")""",
            'CREATE INDEX "idx_admin_session_operator" ON "admin_session" ("operator_id")',
        ),
    ),
    Migration(
        10,
        "audit trail",
        (
            """CREATE TABLE "audit_entry" (
                "id" {pk},
                "at" {ts} NOT NULL,
                "actor_id" BIGINT,
                "actor_name" VARCHAR(64) NOT NULL DEFAULT '',
                "action" VARCHAR(32) NOT NULL,
                "target" VARCHAR(200) NOT NULL DEFAULT '',
                "detail" TEXT NOT NULL DEFAULT '',
                "address" VARCHAR(64) NOT NULL DEFAULT '',
                "surface" VARCHAR(16) NOT NULL
            )""",
            'CREATE INDEX "idx_audit_entry_at" ON "audit_entry" ("at")',
            'CREATE INDEX "idx_audit_entry_action" ON "audit_entry" ("action", "id")',
        ),
    ),
    Migration(
        11,
        "saved replies",
        (
            """CREATE TABLE "saved_reply" (
                "id" {pk},
                "shortcut" VARCHAR(32) NOT NULL,
                "shortcut_key" VARCHAR(128) NOT NULL UNIQUE,
                "text_tr" TEXT NOT NULL DEFAULT '',
                "text_en" TEXT NOT NULL DEFAULT '',
                "created_at" {ts} NOT NULL,
                "updated_at" {ts} NOT NULL
            )""",
        ),
    ),
    Migration(
        12,
        "settings the owner changes in the panel (the widget's origins first)",
        (
            """CREATE TABLE "setting" (
                "key" VARCHAR(64) NOT NULL PRIMARY KEY,
                "value" TEXT NOT NULL,
                "updated_at" {ts} NOT NULL
            )""",
        ),
    ),
    Migration(
        13,
        "rate budgets in PostgreSQL when there is no Redis",
        (
            """CREATE {unlogged} TABLE "rate_window" (
                "key" VARCHAR(100) NOT NULL PRIMARY KEY,
                "hits" {floats} NOT NULL,
                "expires_at" {ts} NOT NULL
            )""",
        ),
    ),
    Migration(
        14,
        "attribution: each operator message's author, and the name it was written under",
        (
            # SET NULL: an operator row is only ever deactivated, but should one be removed,
            # their messages keep the snapshot of the name.
            """ALTER TABLE "message" ADD COLUMN "operator_id" BIGINT
                REFERENCES "operator" ("id") ON DELETE SET NULL""",
            """ALTER TABLE "message"
                ADD COLUMN "author_name" VARCHAR(40) NOT NULL DEFAULT ''""",
        ),
    ),
    Migration(
        15,
        "assignment: a conversation's operator, the transfer note, each operator's read marker",
        (
            """ALTER TABLE "conversation" ADD COLUMN "assigned_operator_id" BIGINT
                REFERENCES "operator" ("id") ON DELETE SET NULL""",
            'ALTER TABLE "conversation" ADD COLUMN "assigned_at" {ts}',
            """ALTER TABLE "conversation" ADD COLUMN "assign_note" VARCHAR(500)
                NOT NULL DEFAULT ''""",
            """ALTER TABLE "conversation" ADD COLUMN "assign_note_by" VARCHAR(64)
                NOT NULL DEFAULT ''""",
            """CREATE INDEX "idx_conversation_assigned"
                ON "conversation" ("assigned_operator_id")""",
            """CREATE TABLE "operator_read" (
                "id" {pk},
                "operator_id" BIGINT NOT NULL REFERENCES "operator" ("id") ON DELETE CASCADE,
                "conversation_id" BIGINT NOT NULL
                    REFERENCES "conversation" ("id") ON DELETE CASCADE,
                "last_seq" INT NOT NULL DEFAULT 0,
                UNIQUE ("operator_id", "conversation_id")
            )""",
            """CREATE INDEX "idx_operator_read_conversation"
                ON "operator_read" ("conversation_id")""",
        ),
    ),
    Migration(
        16,
        "gone visitor tokens: a page that comes back after a delete or a move says which",
        (
            """CREATE TABLE "gone_token" (
                "token_hash" VARCHAR(64) NOT NULL PRIMARY KEY,
                "reason" VARCHAR(8) NOT NULL,
                "created_at" {ts} NOT NULL
            )""",
            'CREATE INDEX "idx_gone_token_created_at" ON "gone_token" ("created_at")',
        ),
    ),
)


def dialect_of(conn: BaseDBAsyncClient) -> str:
    """Name the dialect ("sqlite" or "postgres") of a tortoise connection."""
    name = conn.capabilities.dialect
    if name not in _TYPES:
        raise RuntimeError(f"unsupported database dialect {name!r}")
    return name


def render(statement: str, dialect: str) -> str:
    """Fill a statement's type placeholders for one dialect."""
    return statement.format(**_TYPES[dialect])


async def migrate(conn: BaseDBAsyncClient) -> list[int]:
    """Apply every migration the database has not seen yet; return the versions applied."""
    dialect = dialect_of(conn)
    applied: list[int] = []
    async with transaction(conn.connection_name) as tx:
        if dialect == "postgres":
            # Several processes may start at once: one migrates, the others wait, then see it done.
            # Taken before the version table is created too: two concurrent CREATE TABLE IF NOT
            # EXISTS can both go ahead on PostgreSQL, and the second fails on pg_type's key.
            await tx.execute_query("SELECT pg_advisory_xact_lock(7431001)")
        await tx.execute_script(
            'CREATE TABLE IF NOT EXISTS "schema_migration" ('
            '"version" INT NOT NULL PRIMARY KEY, "name" VARCHAR(200) NOT NULL)'
        )
        rows = await tx.execute_query_dict('SELECT "version" FROM "schema_migration"')
        done = {int(r["version"]) for r in rows}
        for migration in MIGRATIONS:
            if migration.version in done:
                continue
            for statement in migration.statements:
                await tx.execute_script(render(statement, dialect))
            insert = (
                'INSERT INTO "schema_migration" ("version", "name") VALUES ($1, $2)'
                if dialect == "postgres"
                else 'INSERT INTO "schema_migration" ("version", "name") VALUES (?, ?)'
            )
            await tx.execute_insert(insert, [migration.version, migration.name])
            log.info("applied migration %d: %s", migration.version, migration.name)
            applied.append(migration.version)
    return applied
