"""What the panel shows of assignment: who has a conversation, whom it can go to, the tabs'
filters and each operator's own unread counts (messages from the visitor after their marker)."""

from __future__ import annotations

from typing import Any

from app.models import Conversation, Message, Operator, OperatorRead

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


async def unread_for(operator_id: int, convs: list[Conversation]) -> dict[int, int]:
    """Each open conversation's visitor messages after this operator's read marker (closed ones
    are done: they count nothing). Only conversations with anything past the marker are
    counted, so a list where everything is read costs one query."""
    open_convs = [c for c in convs if c.closed_at is None and c.last_seq > 0]
    if not open_convs:
        return {}
    markers = {
        r.conversation_id: r.last_seq
        for r in await OperatorRead.filter(
            operator_id=operator_id, conversation_id__in=[c.id for c in open_convs]
        )
    }
    counts: dict[int, int] = {}
    for conv in open_convs:
        marker = markers.get(conv.id, 0)
        if conv.last_seq <= marker:
            continue
        n = await Message.filter(
            conversation_id=conv.id, role="visitor", deleted_at__isnull=True, seq__gt=marker
        ).count()
        if n:
            counts[conv.id] = n
    return counts


async def tab_counts(
    operator_id: int, convs: list[Conversation], unread: dict[int, int]
) -> dict[str, int]:
    """For each tab, how many of its conversations have messages this operator has not read."""
    return {
        tab: sum(1 for c in convs if in_tab(c, tab, operator_id) and unread.get(c.id))
        for tab in TABS
    }
