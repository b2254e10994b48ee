"""Reading conversations and messages: lookups, history pages, the operator's list and search."""

from __future__ import annotations

from app.core.security import token_hash
from app.errors import NotFound
from app.models import Conversation, Message

HISTORY_PAGE = 200
REPLAY_LIMIT = 500
LIST_LIMIT = 1000
_SORT_CEILING = 10**14


def sort_key(conv: Conversation) -> str:
    """Order of the admin list as a string: waiting ones first (oldest wait first), then recent,
    closed ones last."""
    if conv.closed_at is not None:
        return "2" + str(_SORT_CEILING - int(conv.closed_at.timestamp() * 1000)).zfill(15)
    if conv.waiting_since is not None:
        return "0" + conv.waiting_since.isoformat()
    moment = conv.last_message_at or conv.created_at
    return "1" + str(_SORT_CEILING - int(moment.timestamp() * 1000)).zfill(15)


class ChatQueries:
    """Conversation lookups (with a cache of ids by CID, which never change) and history."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}

    async def by_token(self, token: str | None) -> Conversation | None:
        """The conversation a visitor cookie belongs to, if any."""
        if not token or len(token) > 128:
            return None
        return await Conversation.get_or_none(token_hash=token_hash(token))

    async def by_cid(self, cid: object) -> Conversation:
        """A conversation by its public id, or NotFound."""
        if not isinstance(cid, str) or not 1 <= len(cid) <= 64:
            raise NotFound("bad_chat")
        conv = await Conversation.get_or_none(cid=cid)
        if conv is None:
            raise NotFound("bad_chat")
        self._ids[conv.cid] = conv.id
        return conv

    async def id_for_cid(self, cid: object) -> int:
        """A conversation's id by its public id; cached, as ids never change."""
        if isinstance(cid, str) and cid in self._ids:
            return self._ids[cid]
        conv = await self.by_cid(cid)
        conversation_id: int = conv.id
        return conversation_id

    def forget(self, cid: str) -> None:
        """A deleted conversation's CID may be drawn again: drop it from the cache."""
        self._ids.pop(cid, None)

    async def history(
        self, conversation_id: int, *, after_seq: int = 0, limit: int = REPLAY_LIMIT
    ) -> list[Message]:
        """Messages after a sequence number, oldest first (what a reconnecting client missed)."""
        return (
            await Message.filter(
                conversation_id=conversation_id, seq__gt=after_seq, deleted_at__isnull=True
            )
            .order_by("seq")
            .limit(limit)
        )

    async def recent(
        self, conversation_id: int, *, before_seq: int | None = None, limit: int = HISTORY_PAGE
    ) -> tuple[list[Message], bool]:
        """The latest page of history (or the page before a seq); and whether older ones exist."""
        query = Message.filter(conversation_id=conversation_id, deleted_at__isnull=True)
        if before_seq is not None:
            query = query.filter(seq__lt=before_seq)
        rows = await query.order_by("-seq").limit(limit + 1)
        more = len(rows) > limit
        return list(reversed(rows[:limit])), more

    async def last_author(self, conversation_id: int) -> str:
        """The name of the operator who answered last ("" while nobody has): the visitor's header
        says whom they are talking to."""
        names = (
            await Message.filter(
                conversation_id=conversation_id, role="admin", deleted_at__isnull=True
            )
            .exclude(author_name="")
            .order_by("-seq")
            .limit(1)
            .values_list("author_name", flat=True)
        )
        return str(names[0]) if names else ""

    async def deleted_seqs(self, conversation_id: int) -> list[int]:
        """Sequence numbers deleted in a conversation, so a reconnecting page can drop them."""
        rows = await Message.filter(conversation_id=conversation_id, deleted_at__isnull=False).only(
            "seq"
        )
        return sorted(row.seq for row in rows)

    async def operator_list(self) -> list[Conversation]:
        """Every conversation the operator sees (waiting, answered and closed), in list order."""
        convs = await Conversation.filter(synthetic=False).limit(LIST_LIMIT)
        return sorted(convs, key=sort_key)

    async def open_conversations(self) -> list[Conversation]:
        """Conversations not closed, oldest wait first (Telegram's /list)."""
        convs = await Conversation.filter(synthetic=False, closed_at__isnull=True).limit(200)
        return sorted(convs, key=sort_key)

    async def search(self, query: str, limit: int = 100) -> list[Conversation]:
        """Conversations whose visitor name, CID or any message contains the words, newest first."""
        words = query.split()[:5]
        if not words:
            return await self.operator_list()
        ids: set[int] | None = None
        for word in words:
            by_text = await Message.filter(
                text__icontains=word, deleted_at__isnull=True
            ).values_list("conversation_id", flat=True)
            by_name = await Conversation.filter(visitor_name__icontains=word).values_list(
                "id", flat=True
            )
            by_cid = await Conversation.filter(cid__icontains=word).values_list("id", flat=True)
            found = {int(i) for i in (*by_text, *by_name, *by_cid)}  # type: ignore[call-overload]
            ids = found if ids is None else ids & found
        convs = await Conversation.filter(id__in=sorted(ids or ()), synthetic=False).limit(limit)
        return sorted(convs, key=sort_key)
