"""What the bot writes, in the operator's language, with user text escaped for HTML parse mode."""

from __future__ import annotations

from html import escape

from app.i18n import gettext as _
from app.models import Conversation, Message


def cid_tag(conv: Conversation) -> str:
    return f"[CID: {escape(conv.cid)}]"


def entered(conv: Conversation, assignee: str = "") -> str:
    """The notice for a new conversation: "<name> chat'e girdi" with its CID (and, once someone
    has it, its operator)."""
    page = ""
    if conv.host_url:
        # The website page the visitor came from, when they write through the widget.
        link = f'<a href="{escape(conv.host_url)}">{escape(conv.host_title or conv.host_url)}</a>'
        page = "\n🌐 " + _("On: %(page)s", page=link)
    return (
        "🟢 "
        + _("%(name)s entered the chat", name=f"<b>{escape(conv.visitor_name)}</b>")
        + page
        + ("\n👤 " + _("Assigned to %(name)s", name=escape(assignee)) if assignee else "")
        + (f"\n{cid_tag(conv)}")
    )


def forwarded(conv: Conversation, message: Message, in_topic: bool) -> str:
    """A visitor message (or a panel reply) as the operator sees it in Telegram."""
    tag = "" if in_topic else f" {cid_tag(conv)}"
    if message.role == "visitor":
        head = f"💬 <b>{escape(conv.visitor_name)}</b>{tag}"
    else:
        head = "↩️ " + _("Reply from the panel") + _signed(message) + tag
    return f"{head}\n{escape(message.text)}"


def _signed(message: Message) -> str:
    """Who wrote a panel reply (nothing for one from before attribution)."""
    return f" · <b>{escape(message.author_name)}</b>" if message.author_name else ""


def media_caption(conv: Conversation, message: Message, in_topic: bool) -> str:
    """The caption of a forwarded photo or recording (Telegram allows 1024 characters)."""
    text = message.text if len(message.text) <= CAPTION_TEXT else message.text[:CAPTION_TEXT] + "…"
    tag = "" if in_topic else f" {cid_tag(conv)}"
    if message.role == "visitor":
        head = f"{_MEDIA_ICONS.get(message.kind, '📎')} <b>{escape(conv.visitor_name)}</b>{tag}"
    else:
        head = "↩️ " + _("Reply from the panel") + _signed(message) + tag
    return f"{head}\n{escape(text)}".rstrip()


# Room for the header in Telegram's 1024-character caption.
CAPTION_TEXT = 800
_MEDIA_ICONS = {"photo": "📷", "voice": "🎤", "audio": "🎵"}


def incoming_call(conv: Conversation) -> str:
    """The ring in Telegram: the visitor is calling; answer in the panel."""
    return (
        "📞 "
        + _(
            "%(name)s is calling you. Answer in the panel.",
            name=f"<b>{escape(conv.visitor_name)}</b>",
        )
        + f"\n{cid_tag(conv)}"
    )


def call_over(conv: Conversation, outcome: str) -> str:
    """The ring once the call is over: who called and how it ended ("Call, 3:12")."""
    return (
        "📞 "
        + _(
            "%(name)s called: %(outcome)s",
            name=f"<b>{escape(conv.visitor_name)}</b>",
            outcome=escape(outcome.removeprefix("📞").strip()),
        )
        + f"\n{cid_tag(conv)}"
    )


def topic_name(conv: Conversation) -> str:
    return f"{conv.visitor_name} · {conv.cid}"[:128]


def login_code(code: str, minutes: int) -> str:
    return "🔐 " + _(
        "Sohbet sign-in code: %(code)s (valid %(minutes)s minutes)",
        code=f"<code>{code}</code>",
        minutes=minutes,
    )


def wrong_codes(count: int, client: str) -> str:
    return "⚠️ " + _(
        "%(count)s wrong sign-in codes in a row (from %(client)s).",
        count=count,
        client=escape(client),
    )


def telegram_linked(name: str) -> str:
    return "✅ " + _(
        "This Telegram account is now linked to the operator %(name)s. "
        "Your sign-in codes will come here.",
        name=f"<b>{escape(name)}</b>",
    )


def not_an_operator() -> str:
    """Said once an hour to someone in the admin chat whose messages reach nobody."""
    return _(
        "Not delivered: this Telegram account is not linked to an active operator. An operator "
        "links it in the panel, under “Sign-in security”."
    )


def link_invalid() -> str:
    return _(
        "This link code is not valid or has expired. Send the code the Sohbet page shows now, "
        "e.g. /link 12345678."
    )


def link_taken(name: str) -> str:
    return _(
        "This Telegram account is already linked to the operator %(name)s.",
        name=f"<b>{escape(name)}</b>",
    )


def link_too_many(minutes: int) -> str:
    return _("Too many wrong codes. Try again in %(minutes)s minutes.", minutes=minutes)


def which_conversation() -> str:
    return _(
        "Which conversation? Reply to one of its messages, write inside its topic, "
        "or start your text with [CID: …]."
    )


def help_text() -> str:
    return "\n".join(
        [
            "<b>Sohbet</b>",
            _("Reply to a visitor's message (or write in the conversation's topic) to answer."),
            _("Or start with the tag, e.g. [CID: Eda-7F3C] Hello!"),
            "/list — " + _("open conversations with unread counts"),
            "/r kargo — "
            + _("send the saved reply /kargo to the conversation (/r alone lists them)"),
            "/ban, /unban — "
            + _("block a visitor or lift the block (as a reply, in the topic, or /ban CID)"),
            "/help — " + _("this help"),
        ]
    )


def conversation_list(convs: list[Conversation]) -> str:
    if not convs:
        return _("No open conversations.")
    lines = ["<b>" + _("Open conversations") + "</b>"]
    for conv in convs:
        unread = f" — {_('%(n)s unread', n=conv.unread_admin)}" if conv.unread_admin else ""
        lines.append(f"• <code>{escape(conv.cid)}</code> {escape(conv.visitor_name)}{unread}")
    return "\n".join(lines)


def notice_closed(conv: Conversation, by: str) -> str:
    """The new-conversation notice once someone closed it from Telegram."""
    return entered(conv) + "\n\n✅ " + _("Closed by %(name)s", name=f"<b>{escape(by)}</b>")


def notice_reopened(conv: Conversation, by: str) -> str:
    """The new-conversation notice once someone reopened it from Telegram."""
    return entered(conv) + "\n\n↩️ " + _("Reopened by %(name)s", name=f"<b>{escape(by)}</b>")


def closed(conv: Conversation) -> str:
    return "✅ " + _("Conversation %(cid)s closed.", cid=f"<code>{escape(conv.cid)}</code>")


def reopened(conv: Conversation) -> str:
    return "↩️ " + _("Conversation %(cid)s reopened.", cid=f"<code>{escape(conv.cid)}</code>")


def blocked(conv: Conversation, now_blocked: bool) -> str:
    cid = f"<code>{escape(conv.cid)}</code>"
    if now_blocked:
        return "⛔ " + _("%(name)s (%(cid)s) is blocked.", name=escape(conv.visitor_name), cid=cid)
    return "✅ " + _(
        "%(name)s (%(cid)s) is no longer blocked.", name=escape(conv.visitor_name), cid=cid
    )


def too_big() -> str:
    return _("That file is too big for the bot to download (Telegram allows 20 MB).")


def unsupported_file() -> str:
    return _("Only photos, voice messages and audio files can be passed on to the chat.")


def too_big_for_chat(limit: str) -> str:
    return _("That file is too big to pass on to the chat (at most %(limit)s).", limit=limit)


def plain(text: str) -> str:
    """A text for a button's toast, which shows no HTML."""
    return text.replace("<b>", "").replace("</b>", "").replace("<code>", "").replace("</code>", "")


def saved_choose(conv: Conversation) -> str:
    return "💬 " + _(
        "Saved replies for %(name)s (%(cid)s): choose one to send it.",
        name=f"<b>{escape(conv.visitor_name)}</b>",
        cid=f"<code>{escape(conv.cid)}</code>",
    )


def saved_suggest(shortcut: str, conv: Conversation) -> str:
    return "🔎 " + _(
        "No saved reply is called /%(shortcut)s. Did you mean one of these? (to %(name)s)",
        shortcut=escape(shortcut),
        name=f"<b>{escape(conv.visitor_name)}</b>",
    )


def saved_more(shown: int, total: int) -> str:
    return _(
        "Showing %(shown)s of %(total)s: write /r and a word to narrow the list.",
        shown=shown,
        total=total,
    )


def saved_unknown(shortcut: str) -> str:
    return "⚠️ " + _(
        "No saved reply is called /%(shortcut)s. Send /r alone to choose from the list.",
        shortcut=escape(shortcut),
    )


def saved_none() -> str:
    return _("There are no saved replies yet. Add them in the panel, under Saved replies.")


def saved_sent(shortcut: str, conv: Conversation, text: str) -> str:
    head = "✅ " + _(
        "Saved reply /%(shortcut)s sent to %(name)s:",
        shortcut=escape(shortcut),
        name=f"<b>{escape(conv.visitor_name)}</b>",
    )
    return f"{head}\n{escape(text)}"


def saved_sent_toast(shortcut: str, conv: Conversation) -> str:
    return _("Sent /%(shortcut)s to %(name)s.", shortcut=shortcut, name=conv.visitor_name)


def saved_already() -> str:
    return _("That saved reply was already sent from this list.")
