"""Settings, read once from the environment (and `.env`) when the app is built."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import ip_network
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the message names it."""


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class TelegramSettings:
    """The bot's settings; absent (None) when TELEGRAM_BOT_TOKEN is not set."""

    token: str
    admin_chat_id: int
    mode: str = "polling"
    webhook_url: str = ""
    webhook_secret: str = ""
    api_base: str = "https://api.telegram.org"
    topics: str = "auto"
    poll_timeout: int = 25
    max_backoff: float = 300.0


@dataclass(frozen=True)
class MediaSettings:
    """Photos and voice messages: limits and where the files are kept (local, s3, cloudinary)."""

    storage: str = "local"
    dir: str = "data/media"
    max_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_side: int = 2048
    max_seconds: int = 600
    visitor_quota: int = 100 * 1024 * 1024
    s3_bucket: str = ""
    s3_endpoint_url: str = ""
    s3_region: str = "us-east-1"
    s3_access_key_id: str = ""
    s3_secret_access_key: str = ""
    s3_prefix: str = "media/"
    cloudinary_cloud: str = ""
    cloudinary_key: str = ""
    cloudinary_secret: str = ""
    cloudinary_api_base: str = "https://api.cloudinary.com"
    cloudinary_delivery_base: str = "https://res.cloudinary.com"
    cloudinary_folder: str = "sohbet"


@dataclass(frozen=True)
class CallSettings:
    """Calls: ICE servers handed to browsers, TURN credentials, relay and echo peer limits."""

    # Each entry: {"urls": [...], "username"?, "credential"?} as RTCPeerConnection takes it.
    ice_servers: tuple[tuple[str, ...], ...] = (("stun:stun.l.google.com:19302",),)
    turn_urls: tuple[str, ...] = ()
    turn_secret: str = ""
    turn_ttl: int = 3600
    # ICE servers of the server's own peer connections (echo, relay); none by default.
    relay_ice_servers: tuple[tuple[str, ...], ...] = ()
    force_relay: bool = False
    relay_max: int = 20
    ring_seconds: int = 30
    p2p_timeout: float = 4.0
    echo_enabled: bool = True
    echo_seconds: int = 60
    echo_per_hour: int = 10


@dataclass(frozen=True)
class Settings:
    """Every setting the app reads; `.env.example` documents each one."""

    env: str = "development"
    secret_key: str = ""
    database_url: str = "sqlite://data/sohbet.db"
    admin_password: str = ""
    allowed_origins: tuple[str, ...] = ()
    tz: str = "Europe/Istanbul"
    redis_url: str = ""
    redis_channel: str = "sohbet"
    operator_name: str = "Destek"
    default_locale: str = "tr"
    max_message_chars: int = 4000
    max_name_chars: int = 40
    admin_session_hours: int = 12
    login_codes_per_hour: int = 5
    cookie_secure: bool = False
    public_url: str = ""
    ws_compression: bool = False
    # CSP frame-ancestors: who may put the pages in a frame ('none': nobody).
    frame_ancestors: str = "'none'"
    # Origins whose pages may embed the chat widget (/widget.js); empty: the widget is off.
    widget_origins: tuple[str, ...] = ()
    # The key a host site signs a logged-in customer's id with (Sohbet.identify).
    widget_identity_secret: str = ""
    # How often the closed launcher on a host page asks whether an operator is online.
    widget_poll_seconds: int = 60
    # Peers whose X-Forwarded-For is believed (a reverse proxy); everyone else's is ignored.
    trusted_proxies: tuple[str, ...] = ()
    # Budgets per client: new conversations per address per hour, visitor messages per minute.
    conversations_per_hour: int = 10
    messages_per_minute: int = 30
    # With several processes, one holds the Telegram lease (outbox, inbox, polling) at a time.
    leader_lease_seconds: int = 15
    # With Redis, a process that stops beating this long has its sockets leave presence.
    presence_ttl_seconds: int = 15
    # A scraper sends it as a bearer token to read /metrics without an operator session.
    metrics_token: str = ""
    telegram: TelegramSettings | None = None
    media: MediaSettings = field(default_factory=MediaSettings)
    calls: CallSettings = field(default_factory=CallSettings)
    # Self-tests: the server's own base URL (empty: learnt from requests), runs kept, limits.
    selftest_url: str = ""
    selftest_history: int = 30
    # Checks reported as "off" instead of run (e.g. "calls" where WebRTC must not run).
    selftest_skip: tuple[str, ...] = ()
    selftest_outbox_max_age: int = 300
    repair_stuck_attempts: int = 5
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)


def load_settings(overrides: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from `.env`, the environment and test overrides, failing loudly."""
    from dotenv import dotenv_values

    env: dict[str, str] = {}
    env_file = Path(
        (overrides or {}).get("SOHBET_ENV_FILE") or os.environ.get("SOHBET_ENV_FILE", ".env")
    )
    if env_file.is_file():
        env.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    env.update(os.environ)
    env.update(overrides or {})

    mode = env.get("SOHBET_ENV", "development").strip() or "development"
    production = mode == "production"

    def required(name: str, dev_default: str) -> str:
        value = env.get(name, "").strip()
        if value:
            return value
        if production:
            raise ConfigError(f"{name} must be set when SOHBET_ENV=production")
        return dev_default

    def integer(name: str, default: int) -> int:
        raw = env.get(name, "").strip()
        if not raw:
            return default
        try:
            return int(raw)
        except ValueError as exc:
            raise ConfigError(f"{name} must be a whole number, got {raw!r}") from exc

    tz = env.get("TZ", "").strip() or "Europe/Istanbul"
    # TZ may be a POSIX path like ":/etc/localtime" on some hosts; only IANA names are accepted.
    try:
        ZoneInfo(tz.lstrip(":"))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"TZ must be an IANA time zone such as Europe/Istanbul, got {tz!r}"
        ) from exc

    origins = tuple(
        o.strip().rstrip("/") for o in env.get("ALLOWED_ORIGINS", "").split(",") if o.strip()
    )
    if production and not origins:
        raise ConfigError(
            "ALLOWED_ORIGINS must list the site's origin(s) when SOHBET_ENV=production"
        )

    locale = env.get("DEFAULT_LOCALE", "tr").strip() or "tr"
    if locale not in {"tr", "en"}:
        raise ConfigError(f"DEFAULT_LOCALE must be tr or en, got {locale!r}")

    selftest_url = env.get("SELFTEST_URL", "").strip().rstrip("/")
    if selftest_url and not selftest_url.startswith(("http://", "https://")):
        raise ConfigError(
            f"SELFTEST_URL must be the server's own http(s):// base URL, got {selftest_url!r}"
        )
    selftest_history = integer("SELFTEST_HISTORY", 30)
    if not 1 <= selftest_history <= 1000:
        raise ConfigError(f"SELFTEST_HISTORY must be 1-1000, got {selftest_history}")
    outbox_max_age = integer("SELFTEST_OUTBOX_MAX_AGE", 300)
    stuck_attempts = integer("REPAIR_STUCK_ATTEMPTS", 5)
    if outbox_max_age < 1 or stuck_attempts < 1:
        raise ConfigError("SELFTEST_OUTBOX_MAX_AGE and REPAIR_STUCK_ATTEMPTS must be at least 1")

    proxies = tuple(p.strip() for p in env.get("TRUSTED_PROXIES", "").split(",") if p.strip())
    for proxy in proxies:
        try:
            ip_network(proxy, strict=False)
        except ValueError as exc:
            raise ConfigError(
                f"TRUSTED_PROXIES must list IP addresses or networks, got {proxy!r}"
            ) from exc
    frame_ancestors = env.get("FRAME_ANCESTORS", "").strip() or "'none'"
    if not _FRAME_ANCESTORS.match(frame_ancestors):
        raise ConfigError(
            "FRAME_ANCESTORS must be 'none', 'self' or origins separated by spaces, "
            f"got {frame_ancestors!r}"
        )
    widget_origins: tuple[str, ...] = ()
    for entry in env.get("WIDGET_ORIGINS", "").split(","):
        try:
            origin = widget_origin(entry) if entry.strip() else ""
        except OriginError as exc:
            raise ConfigError(
                f"WIDGET_ORIGINS must list origins like https://shop.example.com, got {entry!r}"
            ) from exc
        if origin and origin not in widget_origins:
            widget_origins += (origin,)
    budgets = {
        name: integer(name, default)
        for name, default in (
            ("CONVERSATIONS_PER_HOUR", 10),
            ("MESSAGES_PER_MINUTE", 30),
            ("LEADER_LEASE_SECONDS", 15),
            ("PRESENCE_TTL_SECONDS", 15),
            ("WIDGET_POLL_SECONDS", 60),
        )
    }
    for name, value in budgets.items():
        if value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")

    return Settings(
        telegram=_telegram(env, integer),
        media=_media(env, integer),
        calls=_calls(env, integer),
        frame_ancestors=frame_ancestors,
        widget_origins=widget_origins,
        widget_identity_secret=env.get("WIDGET_IDENTITY_SECRET", "").strip(),
        widget_poll_seconds=budgets["WIDGET_POLL_SECONDS"],
        trusted_proxies=proxies,
        conversations_per_hour=budgets["CONVERSATIONS_PER_HOUR"],
        messages_per_minute=budgets["MESSAGES_PER_MINUTE"],
        leader_lease_seconds=budgets["LEADER_LEASE_SECONDS"],
        presence_ttl_seconds=budgets["PRESENCE_TTL_SECONDS"],
        metrics_token=env.get("METRICS_TOKEN", "").strip(),
        selftest_url=selftest_url,
        selftest_history=selftest_history,
        selftest_skip=tuple(
            n.strip() for n in env.get("SELFTEST_SKIP", "").split(",") if n.strip()
        ),
        selftest_outbox_max_age=outbox_max_age,
        repair_stuck_attempts=stuck_attempts,
        public_url=env.get("PUBLIC_URL", "").strip().rstrip("/"),
        ws_compression=_bool(env.get("WS_COMPRESSION", "0")),
        env=mode,
        # A random development key means admin sessions end when the server restarts.
        secret_key=required("SECRET_KEY", secrets.token_hex(32)),
        database_url=required("DATABASE_URL", "sqlite://data/sohbet.db"),
        admin_password=required("ADMIN_PASSWORD", "admin"),
        allowed_origins=origins,
        tz=tz.lstrip(":"),
        redis_url=env.get("REDIS_URL", "").strip(),
        redis_channel=env.get("REDIS_CHANNEL", "").strip() or "sohbet",
        operator_name=env.get("OPERATOR_NAME", "").strip() or "Destek",
        default_locale=locale,
        max_message_chars=integer("MAX_MESSAGE_CHARS", 4000),
        max_name_chars=integer("MAX_NAME_CHARS", 40),
        admin_session_hours=integer("ADMIN_SESSION_HOURS", 12),
        login_codes_per_hour=integer("LOGIN_CODES_PER_HOUR", 5),
        cookie_secure=_bool(env.get("COOKIE_SECURE", "1" if production else "0")),
        extra={k: v for k, v in env.items() if k.startswith("SOHBET_")},
    )


def _ice_list(env: Mapping[str, str], name: str, default: str) -> tuple[tuple[str, ...], ...]:
    """`stun:a:3478 stun:b:3478, turn:c` : servers split by commas, URLs of one by spaces."""
    raw = env.get(name)
    raw = default if raw is None else raw.strip()
    if raw.lower() in {"", "none"}:
        return ()
    servers = []
    for group in raw.split(","):
        urls = tuple(group.split())
        for url in urls:
            if not re.match(r"^(stun|stuns|turn|turns):[^\s]+$", url):
                raise ConfigError(f"{name}: {url!r} is not a stun:, stuns:, turn: or turns: URL")
        if urls:
            servers.append(urls)
    return tuple(servers)


def _calls(env: Mapping[str, str], integer: Callable[[str, int], int]) -> CallSettings:
    turn_urls = tuple(u for u in env.get("TURN_URLS", "").replace(",", " ").split() if u)
    for url in turn_urls:
        if not re.match(r"^turns?:[^\s]+$", url):
            raise ConfigError(f"TURN_URLS: {url!r} is not a turn: or turns: URL")
    secret = env.get("TURN_SECRET", "").strip()
    if secret and not turn_urls:
        raise ConfigError("TURN_SECRET is set but TURN_URLS is empty: name the TURN server(s)")
    calls = CallSettings(
        ice_servers=_ice_list(env, "ICE_SERVERS", "stun:stun.l.google.com:19302"),
        turn_urls=turn_urls,
        turn_secret=secret,
        turn_ttl=integer("TURN_TTL", 3600),
        relay_ice_servers=_ice_list(env, "RELAY_ICE_SERVERS", ""),
        force_relay=_bool(env.get("CALL_FORCE_RELAY", "0")),
        relay_max=integer("CALL_RELAY_MAX", 20),
        ring_seconds=integer("CALL_RING_SECONDS", 30),
        p2p_timeout=integer("CALL_P2P_TIMEOUT_MS", 4000) / 1000,
        echo_enabled=_bool(env.get("ECHO_PEER", "1")),
        echo_seconds=integer("ECHO_SECONDS", 60),
        echo_per_hour=integer("ECHO_PER_HOUR", 10),
    )
    if calls.turn_ttl < 60 or calls.ring_seconds < 5 or calls.relay_max < 0:
        raise ConfigError(
            "TURN_TTL must be at least 60, CALL_RING_SECONDS at least 5, CALL_RELAY_MAX >= 0"
        )
    if not 0.5 <= calls.p2p_timeout <= 60 or calls.echo_seconds < 5:
        raise ConfigError("CALL_P2P_TIMEOUT_MS must be 500-60000 and ECHO_SECONDS at least 5")
    return calls


# Keywords or origins only: a CSP directive must not be able to smuggle in another one.
_FRAME_ANCESTORS = re.compile(
    r"^('none'|'self'|https?://[A-Za-z0-9.*:-]+)( ('self'|https?://[A-Za-z0-9.*:-]+))*$"
)
_WIDGET_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
MAX_ORIGIN = 200


class OriginError(ValueError):
    """Not a web origin; `code` names what is wrong (app/widget/origins.py explains it), and
    `origin` is the origin the value starts with, when it has one (a URL with a path)."""

    def __init__(self, code: str, origin: str = "") -> None:
        super().__init__(code)
        self.code = code
        self.origin = origin


def widget_origin(value: str) -> str:
    """`value` as a browser writes an origin (the Origin header, `location.origin`): http or
    https, a host name or address in lower case (IDN in punycode), a port only when it is not
    the scheme's default, nothing after it (a trailing slash is dropped)."""
    text = value.strip()
    if len(text) > MAX_ORIGIN:
        raise OriginError("too_long")
    if "*" in text:
        raise OriginError("wildcard")
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        raise OriginError("scheme")
    scheme = scheme.lower()
    netloc, tail = re.match(r"([^/?#]*)(.*)", rest, re.DOTALL).groups()  # type: ignore[union-attr]
    if "@" in netloc or not netloc:
        raise OriginError("host")
    host, colon, port = netloc.rpartition(":") if ":" in netloc else (netloc, "", "")
    try:
        host = host.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise OriginError("host") from exc
    labels = host.split(".")
    if not all(_HOST_LABEL.match(label) for label in labels):
        raise OriginError("host")
    if colon:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise OriginError("port")
        port = "" if int(port) == {"http": 80, "https": 443}[scheme] else str(int(port))
    origin = f"{scheme}://{host}{':' + port if port else ''}"
    if tail.strip("/"):
        raise OriginError("path", origin)
    assert _WIDGET_ORIGIN.match(origin)
    return origin


_SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,256}$")


def _telegram(
    env: Mapping[str, str], integer: Callable[[str, int], int]
) -> TelegramSettings | None:
    token = env.get("TELEGRAM_BOT_TOKEN", "").strip()
    if not token:
        return None
    raw_chat = env.get("TELEGRAM_ADMIN_CHAT_ID", "").strip()
    try:
        chat_id = int(raw_chat)
    except ValueError as exc:
        raise ConfigError(
            f"TELEGRAM_ADMIN_CHAT_ID must be the admin chat's numeric id, got {raw_chat!r}"
        ) from exc
    mode = env.get("TELEGRAM_MODE", "").strip() or "polling"
    if mode not in {"polling", "webhook"}:
        raise ConfigError(f"TELEGRAM_MODE must be polling or webhook, got {mode!r}")
    webhook_url = env.get("TELEGRAM_WEBHOOK_URL", "").strip()
    secret = env.get("TELEGRAM_WEBHOOK_SECRET", "").strip()
    if mode == "webhook":
        # Telegram needs https; a local Bot API server (TELEGRAM_API_BASE) may use plain http.
        local = urlsplit(webhook_url).hostname in {"127.0.0.1", "localhost", "::1"}
        if not (
            webhook_url.startswith("https://") or (local and webhook_url.startswith("http://"))
        ):
            raise ConfigError(
                "TELEGRAM_WEBHOOK_URL must be an https:// URL in webhook mode "
                "(plain http only on a loopback address, for a local Bot API server)"
            )
        if not _SECRET_TOKEN.match(secret):
            raise ConfigError(
                "TELEGRAM_WEBHOOK_SECRET must be 16-256 characters of A-Z, a-z, 0-9, _ and -"
            )
    topics = env.get("TELEGRAM_TOPICS", "").strip() or "auto"
    if topics not in {"auto", "on", "off"}:
        raise ConfigError(f"TELEGRAM_TOPICS must be auto, on or off, got {topics!r}")
    return TelegramSettings(
        token=token,
        admin_chat_id=chat_id,
        mode=mode,
        webhook_url=webhook_url,
        webhook_secret=secret,
        api_base=(env.get("TELEGRAM_API_BASE", "").strip() or "https://api.telegram.org"),
        topics=topics,
        poll_timeout=integer("TELEGRAM_POLL_TIMEOUT", 25),
        max_backoff=float(integer("TELEGRAM_MAX_BACKOFF", 300)),
    )


def _media(env: Mapping[str, str], integer: Callable[[str, int], int]) -> MediaSettings:
    storage = env.get("MEDIA_STORAGE", "").strip().lower() or "local"
    if storage not in {"local", "s3", "cloudinary"}:
        raise ConfigError(f"MEDIA_STORAGE must be local, s3 or cloudinary, got {storage!r}")
    limits = {
        "MEDIA_MAX_BYTES": integer("MEDIA_MAX_BYTES", 10 * 1024 * 1024),
        "MEDIA_MAX_PIXELS": integer("MEDIA_MAX_PIXELS", 40_000_000),
        "MEDIA_MAX_SIDE": integer("MEDIA_MAX_SIDE", 2048),
        "MEDIA_MAX_SECONDS": integer("MEDIA_MAX_SECONDS", 600),
        "MEDIA_VISITOR_QUOTA": integer("MEDIA_VISITOR_QUOTA", 100 * 1024 * 1024),
    }
    for name, value in limits.items():
        if value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
    s3: dict[str, str] = {}
    if storage == "s3":
        s3 = {
            "s3_bucket": env.get("S3_BUCKET", "").strip(),
            "s3_endpoint_url": env.get("S3_ENDPOINT_URL", "").strip(),
            "s3_region": env.get("S3_REGION", "").strip() or "us-east-1",
            "s3_access_key_id": env.get("S3_ACCESS_KEY_ID", "").strip(),
            "s3_secret_access_key": env.get("S3_SECRET_ACCESS_KEY", "").strip(),
            "s3_prefix": env.get("S3_PREFIX", "media/").strip(),
        }
        for name in ("S3_BUCKET", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"):
            if not env.get(name, "").strip():
                raise ConfigError(f"{name} must be set when MEDIA_STORAGE=s3")
    cloud: dict[str, str] = {}
    if storage == "cloudinary":
        url = urlsplit(env.get("CLOUDINARY_URL", "").strip())
        if url.scheme != "cloudinary" or not (url.hostname and url.username and url.password):
            raise ConfigError(
                "CLOUDINARY_URL must look like cloudinary://API_KEY:API_SECRET@CLOUD_NAME "
                "when MEDIA_STORAGE=cloudinary"
            )
        cloud = {
            "cloudinary_cloud": url.hostname,
            "cloudinary_key": url.username,
            "cloudinary_secret": url.password,
            "cloudinary_api_base": (
                env.get("CLOUDINARY_API_BASE", "").strip().rstrip("/")
                or "https://api.cloudinary.com"
            ),
            "cloudinary_delivery_base": (
                env.get("CLOUDINARY_DELIVERY_BASE", "").strip().rstrip("/")
                or "https://res.cloudinary.com"
            ),
            "cloudinary_folder": env.get("CLOUDINARY_FOLDER", "").strip().strip("/") or "sohbet",
        }
    return MediaSettings(
        storage=storage,
        dir=env.get("MEDIA_DIR", "").strip() or "data/media",
        max_bytes=limits["MEDIA_MAX_BYTES"],
        max_pixels=limits["MEDIA_MAX_PIXELS"],
        max_side=limits["MEDIA_MAX_SIDE"],
        max_seconds=limits["MEDIA_MAX_SECONDS"],
        visitor_quota=limits["MEDIA_VISITOR_QUOTA"],
        **s3,
        **cloud,
    )
