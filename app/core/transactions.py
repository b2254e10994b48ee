"""Transactions that a lost database connection cannot poison.

tortoise's `in_transaction` (1.1.9) takes a pooled connection and makes it the current task's
connection before it sends BEGIN. When BEGIN fails (the database went away, a proxy cut the
connection) its `__aenter__` raises and nothing undoes that: the connection is never given
back, and every later transaction in the same task nests into the dead one ("connection has
been released back to the pool"). A long-lived task (the message writer, the outbox worker,
the lease) then fails for good. Its own exit undoes both, so a failed enter runs it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction


@contextlib.asynccontextmanager
async def transaction(connection_name: str | None = None) -> AsyncIterator[BaseDBAsyncClient]:
    """`tortoise.transactions.in_transaction`, safe when BEGIN itself fails."""
    context = in_transaction(connection_name)
    try:
        client = await context.__aenter__()
    except BaseException as exc:
        # The rollback fails on a connection that never began; the release and the reset of
        # the task's connection happen anyway (in tortoise's `finally`).
        with contextlib.suppress(Exception):
            await context.__aexit__(type(exc), exc, exc.__traceback__)
        raise
    try:
        yield client
    except BaseException as exc:
        await context.__aexit__(type(exc), exc, exc.__traceback__)  # rolls back; never swallows
        raise
    await context.__aexit__(None, None, None)


async def one_at_a_time(tx: BaseDBAsyncClient, name: str) -> None:
    """Hold the lock `name` until `tx` ends, across every process on the database: for a
    count-then-insert (a budget counted from its own rows) that parallel requests must not all
    pass. PostgreSQL: a transaction-level advisory lock; SQLite: tortoise already runs one
    transaction at a time."""
    if tx.capabilities.dialect == "postgres":
        await tx.execute_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [name])
