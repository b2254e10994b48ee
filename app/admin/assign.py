"""What the panel shows of assignment: who has a conversation, whom it can go to, the tabs'
filters and each operator's own unread counts (messages from the visitor after their marker)."""

from __future__ import annotations

from typing import Any

from tortoise import Tortoise

from app.models import Conversation, Operator

TABS = ("mine", "unassigned", "all")


async def assignment_context(conv: Conversation) -> dict[str, Any]:
    """The pane's assignment bar: the assignee and the operators it can be transferred to."""
    team = await Operator.filter(active=True).order_by("name")
    assignee = next((op for op in team if op.id == conv.assigned_operator_id), None)
    if assignee is None and conv.assigned_operator_id is not None:
        assignee = await Operator.get_or_none(id=conv.assigned_operator_id)
    return {
        "assignee": assignee,
        "transfer_to": [op for op in team if op.id != conv.assigned_operator_id],
    }


def in_tab(conv: Conversation, tab: str, operator_id: int) -> bool:
    if tab == "mine":
        return bool(conv.assigned_operator_id == operator_id)
    if tab == "unassigned":
        return conv.assigned_operator_id is None
    return True


_UNREAD_SQL = """
    SELECT m."conversation_id", COUNT(*) AS n
    FROM "message" m
    LEFT JOIN "operator_read" r
        ON r."conversation_id" = m."conversation_id" AND r."operator_id" = {p1}
    WHERE m."conversation_id" IN ({ids}) AND m."role" = 'visitor'
        AND m."deleted_at" IS NULL AND m."seq" > COALESCE(r."last_seq", 0)
    GROUP BY m."conversation_id"
"""


async def unread_for(operator_id: int, convs: list[Conversation]) -> dict[int, int]:
    """Each open conversation's visitor messages after this operator's read marker (closed ones
    are done: they count nothing), in one query: a range of the (conversation, seq) index past
    each marker."""
    ids = [int(c.id) for c in convs if c.closed_at is None and c.last_seq > 0]
    if not ids:
        return {}
    conn = Tortoise.get_connection("default")
    postgres = conn.capabilities.dialect == "postgres"
    marks = [f"${n}" if postgres else "?" for n in range(2, len(ids) + 2)]
    sql = _UNREAD_SQL.format(p1="$1" if postgres else "?", ids=", ".join(marks))
    rows = await conn.execute_query_dict(sql, [operator_id, *ids])
    return {int(row["conversation_id"]): int(row["n"]) for row in rows if row["n"]}


async def tab_counts(
    operator_id: int, convs: list[Conversation], unread: dict[int, int]
) -> dict[str, int]:
    """For each tab, how many of its conversations have messages this operator has not read."""
    return {
        tab: sum(1 for c in convs if in_tab(c, tab, operator_id) and unread.get(c.id))
        for tab in TABS
    }
