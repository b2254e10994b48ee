"""Drive database rate budgets in a fresh interpreter (tortoise keeps global state, and the test
process must not hold a PostgreSQL connection beside its SQLite ones): two limiters on one
database, as two processes build them. Prints one JSON object of what each scenario saw.

    python -m tests.support.db_budgets postgres://.../db
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import Any

from tortoise import Tortoise

from app.core.ratelimit import DatabaseBudget, Limiter
from app.db import open_database


async def scenarios(url: str) -> dict[str, Any]:
    await open_database(url)
    one, two = Limiter(database_url=url), Limiter(database_url=url)
    out: dict[str, Any] = {"where": [one.where, two.where]}
    a, b = one.budget("messages", 5, 60), two.budget("messages", 5, 60)
    out["types"] = [type(a).__name__, type(b).__name__]
    out["hot"] = type(one.budget("messages", 5, 60, hot=True)).__name__
    out["alternating"] = [await (a if n % 2 else b).hit("c1") == 0 for n in range(10)]
    out["wait"] = await a.hit("c1")
    out["other_key"] = await b.hit("c2")
    out["other_name"] = await one.budget("uploads", 5, 60).hit("c1")

    # A refund on one process frees a place for both.
    p1, p2 = one.budget("password_tries", 3, 900), two.budget("password_tries", 3, 900)
    out["refund"] = [await p1.hit("addr") for _ in range(3)]
    out["refund"].append(await p2.hit("addr"))
    await p2.refund("addr")
    out["refund"] += [await p1.hit("addr"), await p2.hit("addr")]

    # Parallel hits through several pooled connections: the budget exactly, never more.
    r1, r2 = one.budget("rush", 20, 60), two.budget("rush", 20, 60)
    waits = await asyncio.gather(*((r1, r2)[n % 2].hit("k") for n in range(60)))
    out["parallel_allowed"] = sum(1 for w in waits if w == 0)

    # A short window frees places as events age, for the other process too: wait as long as
    # the budget says (again, if the sleep woke a little early).
    s1, s2 = one.budget("short", 2, 1), two.budget("short", 2, 1)
    out["short"] = [await s1.hit("c1"), await s2.hit("c1"), await s1.hit("c1")]
    deadline = time.monotonic() + 5
    slept = []
    while wait := await s2.hit("c1"):
        if wait > 1 or time.monotonic() > deadline:
            slept.append(-1.0)
            break
        slept.append(wait)
        await asyncio.sleep(wait)
    out["short_slept"] = slept

    # Rows of windows that have passed are swept.
    conn = Tortoise.get_connection("default")
    assert one.database is not None
    await conn.execute_query(
        "UPDATE rate_window SET expires_at = now() - interval '1 second' WHERE key LIKE 'short:%'"
    )
    one.database._sweep_after = 0.0
    await a.hit("c9")
    _, rows = await conn.execute_query(
        "SELECT count(*) AS n FROM rate_window WHERE key LIKE 'short:%'"
    )
    out["swept"] = rows[0]["n"] == 0
    _, rows = await conn.execute_query(
        "SELECT key FROM rate_window WHERE key LIKE 'password_tries:%'"
    )
    out["stored_keys"] = [row["key"] for row in rows]
    await Tortoise.close_connections()
    return out


async def unreachable(url: str, records: list[str]) -> dict[str, Any]:
    """Nothing listens at `url`: the budget counts in this process, with one warning."""
    await Tortoise.init(
        db_url=url, modules={"models": ["app.models"]}, _enable_global_fallback=True
    )
    budget = Limiter(database_url=url).budget("messages", 2, 60)
    assert isinstance(budget, DatabaseBudget)
    refused = [await budget.hit("c1") > 0 for _ in range(4)]
    await budget.refund("c1")
    after_refund = await budget.hit("c1")
    await Tortoise.close_connections()
    warnings = [r for r in records if "unreachable" in r]
    return {"refused": refused, "after_refund": after_refund, "warnings": len(warnings)}


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def main() -> None:
    url, dead = sys.argv[1], sys.argv[2]
    collect = Collect()
    logging.getLogger("sohbet.ratelimit").addHandler(collect)
    result = asyncio.run(scenarios(url))
    result["unreachable"] = asyncio.run(unreachable(dead, collect.messages))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
