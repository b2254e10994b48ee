"""One set of migrations gives SQLite and PostgreSQL the schema the models expect."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from app.migrations import MIGRATIONS
from tests.support.server import ROOT, create_pg_database, drop_pg_database

# Runs in a fresh interpreter: tortoise keeps global state, and one process must not hold
# both dialects (field notes: SQLite then PostgreSQL in one process broke inserts).
SCRIPT = r"""
import asyncio, json, sys
from tortoise import Tortoise
from app.db import open_database
from app.models import Conversation, Message
from app.timefmt import utcnow

async def columns(conn, dialect, table):
    if dialect == "sqlite":
        rows = await conn.execute_query_dict(f'PRAGMA table_info("{table}")')
        return sorted((r["name"], bool(r["notnull"]) or bool(r["pk"])) for r in rows)
    rows = await conn.execute_query_dict(
        "SELECT column_name AS name, is_nullable FROM information_schema.columns WHERE table_name = $1",
        [table])
    return sorted((r["name"], r["is_nullable"] == "NO") for r in rows)

async def main(url):
    await open_database(url)
    conn = Tortoise.get_connection("default")
    dialect = conn.capabilities.dialect
    out = {}
    # Every model of app.models, so a table added later is checked without editing this list.
    out["tables"] = {}
    for model in Tortoise.apps["models"].values():
        table = model._meta.db_table
        out["tables"][table] = {"db": await columns(conn, dialect, table),
                      "model": sorted((model._meta.fields_db_projection[n], not model._meta.fields_map[n].null)
                                      for n in model._meta.fields_db_projection)}
    c = await Conversation.create(cid="Ada-0001", visitor_name="Ada", token_hash="h" * 64, created_at=utcnow())
    await Message.create(conversation=c, seq=1, client_id="client-01", role="visitor", text="x", created_at=utcnow())
    await Tortoise.close_connections()
    await open_database(url)  # a second start applies nothing and keeps the data
    out["rows"] = await Message.all().count()
    out["versions"] = [r["version"] for r in await Tortoise.get_connection("default").execute_query_dict(
        'SELECT "version" FROM "schema_migration"')]
    await Tortoise.close_connections()
    print(json.dumps(out))

asyncio.run(main(sys.argv[1]))
"""


async def run_script(url: str) -> dict[str, object]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SCRIPT,
        url,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    import json

    return json.loads(out.decode().strip().splitlines()[-1])


@pytest.mark.parametrize(
    "dialect", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_schema_matches_models(dialect: str, tmp_path: object) -> None:
    name = None
    if dialect == "postgres":
        url, name = await create_pg_database()
    else:
        url = f"sqlite://{tmp_path}/m.db"
    try:
        result = await run_script(url)
    finally:
        if name:
            await drop_pg_database(name)
    tables = result["tables"]
    assert isinstance(tables, dict)
    # The tables of every migration so far (the script checks every model it finds).
    assert {
        "conversation",
        "message",
        "admin_session",
        "tg_outbox",
        "audit_entry",
        "setting",
        "saved_reply",
        "rate_window",
        "operator",
        "operator_invite",
    } <= set(tables), sorted(tables)
    for table, info in tables.items():
        assert isinstance(info, dict)
        assert [tuple(c) for c in info["db"]] == [tuple(c) for c in info["model"]], table
    assert result["rows"] == 1
    assert result["versions"] == sorted(m.version for m in MIGRATIONS)
