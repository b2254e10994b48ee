"""Operator accounts: the owner made from ADMIN_PASSWORD, invites, Telegram links, deactivation.

Today's single-operator setup needs no step of its own: at start-up, a database without an
operator gets the owner, named OPERATOR_NAME, with ADMIN_PASSWORD as password and, when the
Telegram admin chat is a private chat, that chat's user as their Telegram account. Everything
from before operators existed (sessions, codes, the authenticator app) becomes the owner's.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import unicodedata
from datetime import timedelta

import socketio
from tortoise.exceptions import IntegrityError

from app.chat.rooms import operator_room
from app.config import Settings
from app.core.ratelimit import Limiter
from app.core.security import (
    hash_password,
    keyed_hash,
    new_token,
    password_matches,
    token_hash,
)
from app.core.transactions import transaction
from app.errors import Conflict, Forbidden, InvalidInput, NotFound
from app.i18n import ERRORS, N_
from app.models import (
    AdminSession,
    Conversation,
    LoginCode,
    Operator,
    OperatorInvite,
    RecoveryCode,
    TotpFactor,
)
from app.timefmt import utcnow

log = logging.getLogger("sohbet.admin.operators")

NAME_MAX = 40
PASSWORD_MIN = 8
PASSWORD_MAX = 200
# How long an invite link works, and how long after accepting it the invitee's browser may
# still show the code that links Telegram.
INVITE_TTL = timedelta(hours=24)
SETUP_TTL = timedelta(hours=1)
# The code sent to the bot to link Telegram: 8 digits, valid this long.
LINK_TTL = timedelta(minutes=30)
LINK_DIGITS = 8
LINK_TRIES = 5
# Avatar colours (white text reads on each); a new operator takes the next one.
COLOURS = ("#2f6fde", "#1e8a5a", "#b5442c", "#7a4bc2", "#b07a10", "#0f7f8c", "#c2377a", "#5a6b7d")
ROLES = ("owner", "operator")
# The Socket.IO namespaces an operator's sockets use; all are cut on deactivation.
NAMESPACES = ("/chat", "/call")

ERRORS.update(
    {
        "operator_name_invalid": N_("Choose a name of 1 to %(limit)s characters."),
        "operator_name_taken": N_("Another operator already has the name “%(name)s”."),
        "password_too_short": N_("Choose a password of at least %(limit)s characters."),
        "password_too_long": N_("The password is too long (at most %(limit)s characters)."),
        "passwords_differ": N_("The two passwords are not the same."),
        "invite_invalid": N_("This invitation link is not valid. Ask the owner for a new one."),
        "invite_expired": N_("This invitation has expired. Ask the owner for a new one."),
        "invite_used": N_("This invitation has already been used. Ask the owner for a new one."),
        "owner_only": N_("Only the owner can do this."),
        "operator_not_found": N_("There is no such operator."),
        "last_owner": N_("The owner cannot be deactivated: the team would have no owner."),
        "operator_deactivated": N_(
            "This operator account has been deactivated. Ask the owner if this is a mistake."
        ),
        "telegram_taken": N_("This Telegram account is already linked to %(name)s."),
        "operator_unknown": N_("No active operator has that name."),
        "name_required": N_("Type your operator name."),
        "no_second_factor": N_(
            "Your Telegram is not linked and no authenticator app is set up: ask the owner."
        ),
    }
)


def normal_name(raw: object) -> tuple[str, str]:
    """A display name as typed, tidied, and its key (case and width folded) for uniqueness."""
    if not isinstance(raw, str):
        raise InvalidInput("operator_name_invalid", limit=NAME_MAX)
    name = " ".join(unicodedata.normalize("NFC", raw).split())
    if not 1 <= len(name) <= NAME_MAX or any(unicodedata.category(ch)[0] == "C" for ch in name):
        raise InvalidInput("operator_name_invalid", limit=NAME_MAX)
    key = unicodedata.normalize("NFKC", name).casefold()[:NAME_MAX]
    return name, key


def check_password(password: object, repeat: object) -> str:
    """A new password that follows the rules (and was typed the same twice)."""
    if not isinstance(password, str) or len(password) < PASSWORD_MIN:
        raise InvalidInput("password_too_short", limit=PASSWORD_MIN)
    if len(password) > PASSWORD_MAX:
        raise InvalidInput("password_too_long", limit=PASSWORD_MAX)
    if password != repeat:
        raise InvalidInput("passwords_differ")
    return password


async def hash_password_async(password: str) -> str:
    """scrypt off the event loop (it takes tens of milliseconds of CPU)."""
    return await asyncio.to_thread(hash_password, password)


async def password_matches_async(stored: str, attempt: str) -> bool:
    return await asyncio.to_thread(password_matches, stored, attempt)


class Operators:
    """The team: the owner at start-up, invites, Telegram links, deactivation and its effects."""

    def __init__(self, settings: Settings, sio: socketio.AsyncServer, limiter: Limiter) -> None:
        self.settings = settings
        self.sio = sio
        # Wrong Telegram link codes, per Telegram user.
        self.link_tries = limiter.budget("link_tries", LINK_TRIES, 15 * 60)
        # Audit entries for a Telegram user who writes in the admin chat without being an
        # operator: one an hour per user (app/telegram/gate.py).
        self.stranger_records = limiter.budget("tg_stranger", 1, 60 * 60)

    # Start-up --------------------------------------------------------------------------------

    async def ensure_owner(self) -> Operator:
        """The owner, made from ADMIN_PASSWORD and the Telegram admin chat when there is none.

        ADMIN_PASSWORD stays the owner's password (as it was the one password before): a
        changed value is taken at the next start.
        """
        owner = await Operator.filter(role="owner").order_by("id").first()
        if owner is None:
            owner = await self._create_owner()
        elif not await password_matches_async(owner.password_hash, self.settings.admin_password):
            owner.password_hash = await hash_password_async(self.settings.admin_password)
            await owner.save(update_fields=["password_hash"])
            log.info("owner's password taken from ADMIN_PASSWORD")
        private = self._admin_private_chat()
        if owner.telegram_user_id is None and private is not None:
            if not await Operator.exists(telegram_user_id=private):
                owner.telegram_user_id = private
                await owner.save(update_fields=["telegram_user_id"])
        # What was there before operators (one shared login) is the owner's.
        for model in (AdminSession, LoginCode, TotpFactor, RecoveryCode):
            await model.filter(operator_id__isnull=True).update(operator_id=owner.id)
        return owner

    def _admin_private_chat(self) -> int | None:
        """The Telegram admin chat's user, when it is a private chat (a group's id is < 0)."""
        tg = self.settings.telegram
        return tg.admin_chat_id if tg is not None and tg.admin_chat_id > 0 else None

    async def _create_owner(self) -> Operator:
        name, key = normal_name(self.settings.operator_name[:NAME_MAX])
        password = await hash_password_async(self.settings.admin_password)
        try:
            async with transaction() as tx:
                owner = await Operator.create(
                    using_db=tx,
                    name=name,
                    name_key=key,
                    colour=COLOURS[0],
                    role="owner",
                    telegram_user_id=self._admin_private_chat(),
                    password_hash=password,
                    created_at=utcnow(),
                )
        except IntegrityError:
            # Another process starting at the same moment made it first.
            found = await Operator.filter(role="owner").order_by("id").first()
            if found is None:
                raise
            return found
        log.info("owner %r created from ADMIN_PASSWORD", name)
        return owner

    # Reading ---------------------------------------------------------------------------------

    async def team(self) -> list[Operator]:
        """Everyone, the owner first, then by name."""
        return list(await Operator.all().order_by("-role", "name_key"))

    async def named(self, raw: object) -> Operator | None:
        """The operator a typed name means, whatever its case."""
        try:
            _, key = normal_name(raw)
        except InvalidInput:
            return None
        return await Operator.get_or_none(name_key=key)

    async def get(self, operator_id: int) -> Operator:
        found = await Operator.get_or_none(id=operator_id)
        if found is None:
            raise NotFound("operator_not_found")
        return found

    # Invites ---------------------------------------------------------------------------------

    async def invite(self, by: Operator) -> tuple[str, OperatorInvite]:
        """A one-time invitation link's token (the row keeps only its hash)."""
        if not by.is_owner:
            raise Forbidden("owner_only")
        token = new_token()
        now = utcnow()
        row = await OperatorInvite.create(
            token_hash=token_hash(token),
            created_by_id=by.id,
            created_at=now,
            expires_at=now + INVITE_TTL,
        )
        log.info("operator %s created an invitation", by.id)
        return token, row

    async def pending_invites(self) -> list[OperatorInvite]:
        return list(
            await OperatorInvite.filter(used_at__isnull=True, expires_at__gt=utcnow()).order_by(
                "-created_at"
            )
        )

    async def revoke_invite(self, by: Operator, digest: str) -> None:
        """End an invitation before its time (the page names it by its token's hash)."""
        if not by.is_owner:
            raise Forbidden("owner_only")
        now = utcnow()
        await OperatorInvite.filter(
            token_hash=digest[:64], used_at__isnull=True, expires_at__gt=now
        ).update(expires_at=now)

    async def open_invite(self, token: str) -> OperatorInvite:
        """The invitation a link names, if it can still be accepted; else why not."""
        if not token or len(token) > 128:
            raise InvalidInput("invite_invalid")
        row = await OperatorInvite.get_or_none(token_hash=token_hash(token))
        if row is None:
            raise InvalidInput("invite_invalid")
        if row.used_at is not None:
            raise Conflict("invite_used")
        if row.expires_at <= utcnow():
            raise InvalidInput("invite_expired")
        return row

    async def accept(
        self, token: str, raw_name: object, password: object, repeat: object
    ) -> tuple[Operator, str]:
        """Make the invited operator; return them and the setup token for their browser.

        The invite is claimed and the operator created in one transaction: a taken name leaves
        the invite usable, and of two browsers accepting at once only one gets it.
        """
        invite = await self.open_invite(token)
        name, key = normal_name(raw_name)
        chosen = check_password(password, repeat)
        if await Operator.exists(name_key=key):
            raise Conflict("operator_name_taken", name=name)
        password_hash = await hash_password_async(chosen)
        setup = new_token()
        now = utcnow()
        count = await Operator.all().count()
        try:
            async with transaction() as tx:
                operator = await Operator.create(
                    using_db=tx,
                    name=name,
                    name_key=key,
                    colour=COLOURS[count % len(COLOURS)],
                    role="operator",
                    password_hash=password_hash,
                    created_at=now,
                )
                claimed = (
                    await OperatorInvite.filter(
                        token_hash=invite.token_hash, used_at__isnull=True, expires_at__gt=now
                    )
                    .using_db(tx)
                    .update(used_at=now, operator_id=operator.id, setup_hash=token_hash(setup))
                )
                if not claimed:
                    raise Conflict("invite_used")
        except IntegrityError:
            raise Conflict("operator_name_taken", name=name) from None
        log.info("invitation accepted: operator %s (%r)", operator.id, name)
        return operator, setup

    async def setting_up(self, setup: str | None) -> Operator | None:
        """The operator whose browser holds this setup token, while the setup window lasts."""
        if not setup or len(setup) > 128:
            return None
        invite = await OperatorInvite.get_or_none(setup_hash=token_hash(setup))
        if invite is None or invite.used_at is None or invite.operator_id is None:
            return None
        if invite.used_at + SETUP_TTL <= utcnow():
            return None
        return await Operator.get_or_none(id=invite.operator_id, active=True)

    # Telegram --------------------------------------------------------------------------------

    async def new_link_code(self, operator: Operator) -> str:
        """A fresh code the operator sends the bot to link their Telegram (the last one lapses)."""
        code = f"{secrets.randbelow(10**LINK_DIGITS):0{LINK_DIGITS}d}"
        await Operator.filter(id=operator.id).update(
            link_code_hash=keyed_hash(self.settings.secret_key, f"link:{code}"),
            link_expires_at=utcnow() + LINK_TTL,
        )
        return code

    async def link_telegram(self, code: str, user_id: int) -> Operator | None:
        """Link the Telegram user who sent a valid link code; None if the code is not valid.

        Raises Conflict when that Telegram account is already another operator's.
        """
        digits = "".join(ch for ch in code if ch.isdigit())
        if len(digits) != LINK_DIGITS:
            return None
        wanted = keyed_hash(self.settings.secret_key, f"link:{digits}")
        operator = await Operator.get_or_none(
            link_code_hash=wanted, link_expires_at__gt=utcnow(), active=True
        )
        if operator is None:
            return None
        other = await Operator.get_or_none(telegram_user_id=user_id)
        if other is not None and other.id != operator.id:
            raise Conflict("telegram_taken", name=other.name)
        try:
            await Operator.filter(id=operator.id, link_code_hash=wanted).update(
                telegram_user_id=user_id, link_code_hash="", link_expires_at=None
            )
        except IntegrityError:
            raise Conflict("telegram_taken", name="?") from None
        log.info("operator %s linked Telegram user %s", operator.id, user_id)
        return await Operator.get(id=operator.id)

    # Deactivation ----------------------------------------------------------------------------

    async def set_active(self, by: Operator, target_id: int, active: bool) -> Operator:
        """Deactivate (or reactivate) an operator; a deactivated one is signed out everywhere."""
        if not by.is_owner:
            raise Forbidden("owner_only")
        target = await self.get(target_id)
        if not active and target.is_owner:
            owners = await Operator.filter(role="owner", active=True).count()
            if owners <= 1 or target.id == by.id:
                raise Conflict("last_owner")
        if target.active == active:
            return target
        now = utcnow()
        async with transaction() as tx:
            await (
                Operator.filter(id=target.id)
                .using_db(tx)
                .update(
                    active=active,
                    deactivated_at=None if active else now,
                    link_code_hash="",
                    link_expires_at=None,
                )
            )
            if not active:
                # Their conversations go back to Unassigned, for the others to take.
                await (
                    Conversation.filter(assigned_operator_id=target.id)
                    .using_db(tx)
                    .update(
                        assigned_operator_id=None,
                        assigned_at=None,
                        assign_note="",
                        assign_note_by="",
                    )
                )
            if active:
                # Nothing from before the deactivation comes back to life.
                await AdminSession.filter(operator_id=target.id).using_db(tx).delete()
                await LoginCode.filter(operator_id=target.id).using_db(tx).delete()
        if not active:
            # Their session rows stay, refused, so an old cookie gets a clear message.
            await self.end_sockets(target.id)
        log.info("operator %s %s operator %s", by.id, "reactivated" if active else "deactivated",
                 target.id)  # fmt: skip
        return await self.get(target.id)

    async def end_sockets(self, operator_id: int) -> None:
        """Disconnect the operator's sockets in every process (the room's close goes through
        Redis when the processes share one; app/realtime/manager.py)."""
        for namespace in NAMESPACES:
            await self.sio.close_room(operator_room(operator_id), namespace=namespace)
