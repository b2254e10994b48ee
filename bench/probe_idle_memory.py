"""Where an idle socket's memory goes in the real server: a tracemalloc diff around N sockets.

    .venv/bin/python -m bench.probe_idle_memory --sockets 2000            # deflate offered
    .venv/bin/python -m bench.probe_idle_memory --sockets 2000 --no-deflate
    .venv/bin/python -m bench.probe_idle_memory --sockets 2000 --no-deflate --joined

With `--joined` every socket is a visitor with a conversation of its own who has joined it and
sent one message, as a visitor on the page is (issue 20's "joined visitor"); without it, all
sockets share one visitor and never join.

Serves the real app with Hypercorn in this process (tracemalloc on), opens a warm-up batch and
then N idle visitor sockets from a child process (bench/sio_client.py), and prints the Python
allocations that stayed, per library, per connection. tracemalloc sees Python and zlib buffers
(both go through PyMem); RSS also counts allocator overhead, so the two totals differ a little.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent

GROUPS = (
    ("zlib (permessage-deflate state)", ("wsproto/extensions.py",)),
    ("hypercorn", ("hypercorn/",)),
    ("wsproto / h11", ("wsproto/", "h11/")),
    ("engineio", ("engineio/",)),
    ("socketio", ("socketio/",)),
    ("asyncio (tasks, transports, futures)", ("asyncio/",)),
    ("app/", ("/app/",)),
    ("tortoise / aiosqlite", ("tortoise/", "aiosqlite/", "pypika")),
)


def group_of(trace: tracemalloc.StatisticDiff) -> str:
    """The library of the line that allocated (zlib state is made in wsproto's extension)."""
    filename = trace.traceback[0].filename
    for name, needles in GROUPS:
        if any(n in filename for n in needles):
            return name
    return "other: " + Path(filename).name


def census() -> dict[str, tuple[int, int]]:
    """Live gc-tracked objects by type: {type name: [count, bytes]} (sys.getsizeof, shallow)."""
    out: dict[str, list[int]] = {}
    for obj in gc.get_objects():
        kind = type(obj)
        name = f"{kind.__module__}.{kind.__qualname__}"
        if kind.__name__ == "coroutine" or kind.__name__ == "function":
            name += f" {getattr(obj, '__qualname__', '')}"
        row = out.setdefault(name, [0, 0])
        row[0] += 1
        row[1] += sys.getsizeof(obj)
    return {k: (v[0], v[1]) for k, v in out.items()}


def rss() -> int:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def client(url: str, cookie: str, count: int, deflate: bool) -> None:
    """Open `count` sockets; `cookie` is one cookie for all, or `@file` of `cookie chat_id` lines
    (then each socket joins its own conversation and sends one message)."""
    from bench.chat_load import joined
    from bench.sio_client import SioClient, ws_url

    gate = asyncio.Semaphore(50)
    clients = []
    if cookie.startswith("@"):
        listed = await asyncio.to_thread(Path(cookie[1:]).read_text)
        visitors = [tuple(line.split()) for line in listed.splitlines()]
    else:
        visitors = [(cookie, "")] * count

    async def one(cookie: str, chat_id: str) -> None:
        async with gate:
            c = SioClient(ws_url(url), cookie=cookie, auth={"as": "visitor"}, compression=deflate)
            await c.connect(20)
            if chat_id:
                await joined(c, chat_id, 30)
            clients.append(c)

    await asyncio.gather(*(one(c, chat) for c, chat in visitors[:count]))
    print(f"ready {len(clients)}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def serve(args: argparse.Namespace) -> None:
    from bench.servers import raise_nofile
    from tests.support.clients import VISITOR_COOKIE, start_visitor
    from tests.support.inprocess import InProcessServer

    raise_nofile()
    work = Path(tempfile.mkdtemp(prefix="sohbet-mem-"))
    # The app on Hypercorn in this process, as the in-process tests serve it.
    server = await InProcessServer(work, {}).start()
    base = server.url
    token, _ = await start_visitor(base, "Mem")
    cookie = f"{VISITOR_COOKIE}={token}"
    if args.joined:
        # Every visitor's conversation exists before the first snapshot (its row is in the
        # database, not in memory); the sockets that join them come after.
        async def visitors(count: int) -> str:
            gate = asyncio.Semaphore(16)

            async def one(i: int) -> str:
                async with gate:
                    token, cid = await start_visitor(base, f"Mem{i}")
                    return f"{VISITOR_COOKIE}={token} {cid}"

            lines = await asyncio.gather(*(one(i) for i in range(count)))
            path = work / f"visitors-{count}.txt"
            path.write_text("\n".join(lines))
            return "@" + str(path)

        warm, main_batch = await visitors(50), await visitors(args.sockets)
    else:
        warm = main_batch = cookie

    async def spawn(count: int, cookie: str) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.probe_idle_memory",
            "--client",
            base,
            cookie,
            str(count),
            *([] if args.deflate else ["--no-deflate"]),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        line = await proc.stdout.readline()
        print(f"client: {line.decode().strip()}", flush=True)
        return proc

    children = [await spawn(50, warm)]
    await asyncio.sleep(2)
    gc.collect()
    before, rss0, census0 = tracemalloc.take_snapshot(), rss(), census()
    children.append(await spawn(args.sockets, main_batch))
    await asyncio.sleep(3)
    # What the server's own collector had not freed yet (cycles: tracebacks, classes...).
    unreachable = gc.collect()
    after, rss1, census1 = tracemalloc.take_snapshot(), rss(), census()
    n = args.sockets
    what = "joined visitors" if args.joined else "sockets"
    stats = after.compare_to(before, "lineno")
    groups: Counter[str] = Counter()
    for stat in stats:
        groups[group_of(stat)] += stat.size_diff
    traced = sum(groups.values())
    print(
        f"\n{n} idle {what}, permessage-deflate {'offered' if args.deflate else 'not offered'}: "
        f"RSS +{(rss1 - rss0) / 1024 / n:.1f} KiB/conn (with tracemalloc's own overhead), "
        f"traced Python allocations +{traced / 1024 / n:.1f} KiB/conn; "
        f"cyclic garbage found by a full collection: {unreachable / n:.1f} objects/conn"
    )
    for name, size in groups.most_common():
        if abs(size) / n >= 100:
            print(f"  {size / 1024 / n:7.1f} KiB/conn  {name}")
    print("\nobjects kept per connection, by type (gc-tracked objects; size without referents):")
    kept = {}
    for k, (count1, size1) in census1.items():
        count0, size0 = census0.get(k, (0, 0))
        kept[k] = (count1 - count0, size1 - size0)
    for kind, (count, size) in sorted(kept.items(), key=lambda kv: -kv[1][1])[: args.top]:
        if count / n >= 0.5:
            print(f"  {count / n:6.1f} x {kind:<50} {size / 1024 / n:6.2f} KiB/conn")
    print("\nlargest allocation sites:")
    for stat in sorted(stats, key=lambda s: -s.size_diff)[: args.top]:
        frame = stat.traceback[0]
        print(
            f"  {stat.size_diff / 1024 / n:7.2f} KiB/conn  "
            f"{Path(frame.filename).parent.name}/{Path(frame.filename).name}:{frame.lineno}"
        )
    for child in children:
        assert child.stdin is not None
        child.stdin.close()
        await asyncio.wait_for(child.wait(), 30)
    await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=2000)
    parser.add_argument("--no-deflate", dest="deflate", action="store_false")
    parser.add_argument("--top", type=int, default=12, help="rows of the type and site tables")
    parser.add_argument(
        "--joined", action="store_true", help="each socket a visitor joined to its own chat"
    )
    parser.add_argument("--client", nargs=3, metavar=("URL", "COOKIE", "COUNT"))
    args = parser.parse_args()
    if args.client:
        from bench.servers import raise_nofile

        raise_nofile()
        url, cookie, count = args.client
        asyncio.run(client(url, cookie, int(count), args.deflate))
        return
    tracemalloc.start(1)
    started = time.monotonic()
    asyncio.run(serve(args))
    print(f"\n({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
