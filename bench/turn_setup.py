"""Call setup time through TURN over TCP, for a visitor whose network drops all UDP.

As root, inside a private network namespace (tests/support/netns.py) with the topology of
tests/support/turn.py: the real server on SQLite whose only ICE server is Debian's coturn
(`turnserver` as a child process, TCP on 3478 and TLS on 443, `use-auth-secret`), the visitor's
aiortc peer in
a namespace that drops all UDP, the operator's in another. Each run is a fresh conversation:
the visitor rings, the operator answers, both peers gather (the visitor's only candidate that
can work is its TURN/TCP allocation) and connect; the figures run from the answer to both
peers connected, and to both hearing the other's tone.

  .venv/bin/python -m bench.turn_setup --runs 7                    # turn:…?transport=tcp
  .venv/bin/python -m bench.turn_setup --runs 7 --scheme turns:    # turns: on 443 (TLS)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

RESULTS = ROOT / "bench" / "results"
SECRET = "bench-turn-secret"
VISITOR_HZ, ADMIN_HZ = 880.0, 660.0


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median": round(statistics.median(values)),
        "min": round(min(values)),
        "max": round(max(values)),
    }


async def one_call(
    base_url: str, admin_token: str, ns: tuple[str, str], scheme: str, n: int
) -> dict[str, Any]:
    from tests.support.calls import call_peer
    from tests.support.clients import start_visitor
    from tests.support.turn import NamespacedMedia, only_url

    token, cid = await start_visitor(base_url, f"Turn{n}")
    caller = await call_peer(base_url, "visitor", token)
    admin = await call_peer(base_url, "admin", admin_token)
    media: list[NamespacedMedia] = []
    try:
        await caller.call("join", {"chat_id": cid})
        ring = await caller.call("call:ring", {"chat_id": cid})
        assert ring["ok"], ring
        call_id = ring["call_id"]
        await admin.wait_for("call:incoming", lambda m: m["call_id"] == call_id)
        accepted = await admin.call("call:accept", {"call_id": call_id})
        assert accepted["ok"], accepted
        mine = await caller.wait_for("call:accepted", lambda m: m["call_id"] == call_id)
        start = time.monotonic()
        # aiortc takes only the first TURN URL; a browser would try each.
        visitor = NamespacedMedia(
            caller,
            call_id,
            VISITOR_HZ,
            ADMIN_HZ,
            ns=ns[0],
            ice_servers=only_url(mine["ice_servers"], scheme),
        )
        operator = NamespacedMedia(
            admin,
            call_id,
            ADMIN_HZ,
            VISITOR_HZ,
            ns=ns[1],
            ice_servers=only_url(accepted["ice_servers"], scheme),
        )
        media = [visitor, operator]
        await asyncio.gather(visitor.offer(), operator.answer())
        gathered = time.monotonic()
        connected = await asyncio.wait_for(
            asyncio.gather(visitor.connected, operator.connected), 30
        )
        heard = await asyncio.gather(visitor.hear(), operator.hear())
        pair = visitor.pair()
        assert pair is not None and pair[0] == "relay", pair
        await caller.call("call:end", {"call_id": call_id})
        return {
            "gathered_ms": (gathered - start) * 1000,
            "connected_ms": (max(connected) - start) * 1000,
            "heard_ms": (max(heard) - start) * 1000,
            "pair": pair,
        }
    finally:
        for item in media:
            await item.close()
        await caller.close()
        await admin.close()


async def bench(runs: int, scheme: str, workdir: Path) -> dict[str, Any]:
    from tests.support import netns, turn
    from tests.support.clients import admin_login
    from tests.support.server import Server

    with (
        netns.own_default_executor(),
        turn.udp_blocked_visitor() as top,
        turn.coturn(workdir / "coturn", SECRET) as running,
    ):
        # The self-signed certificate stands in for a public CA's (OpenSSL reads this).
        os.environ["SSL_CERT_FILE"] = str(running.ca_file)
        urls = f"{running.tcp_url} {running.tls_url}"
        server = Server(
            database_url=f"sqlite://{workdir / 'turn.db'}",
            workdir=workdir,
            env_extra={"ICE_SERVERS": "none", "TURN_URLS": urls, "TURN_SECRET": SECRET},
        )
        await server.start()
        try:
            admin_token = await admin_login(server)
            calls = []
            for n in range(runs):
                result = await one_call(
                    server.url, admin_token, (top.visitor_ns, top.operator_ns), scheme, n
                )
                print(
                    f"run {n + 1}: gathered {result['gathered_ms']:.0f} ms, connected "
                    f"{result['connected_ms']:.0f} ms, both heard {result['heard_ms']:.0f} ms "
                    f"(visitor's pair {result['pair'][0]} -> {result['pair'][1]})",
                    flush=True,
                )
                calls.append(result)
        finally:
            server.stop()
    return {
        "turn_url": running.tls_url if scheme == "turns:" else running.tcp_url,
        "gathered_ms": summary([c["gathered_ms"] for c in calls]),
        "connected_ms": summary([c["connected_ms"] for c in calls]),
        "heard_ms": summary([c["heard_ms"] for c in calls]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--scheme", choices=["turn:", "turns:"], default="turn:")
    args = parser.parse_args()

    from tests.support import netns, turn

    why = netns.unavailable() or turn.unavailable()
    if why:
        sys.exit(why)
    with netns.private_network(), tempfile.TemporaryDirectory() as tmp:
        result: dict[str, Any] = {
            "when": datetime.now(UTC).isoformat(),
            "cores": os.cpu_count(),
            # Other work on the machine shows in the figures: note how busy it was.
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        }
        result.update(asyncio.run(bench(args.runs, args.scheme, Path(tmp))))
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    kind = "tls" if args.scheme == "turns:" else "tcp"
    for name in (f"{stamp}-turn_setup-{kind}.json", f"latest-turn_setup-{kind}.json"):
        (RESULTS / name).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
