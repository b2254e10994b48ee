"""Call benchmarks: setup times in Chromium, and the server's CPU per relayed call.

Everything runs inside a private network namespace (as root: `unshare -n`, loopback up plus
127.0.0.2, the address WebRTC uses here), with the real server on SQLite:

  setup   Chromium pages (the real call.js): click to the first remote sound, browser <-> echo
          peer ("Test my microphone") and browser <-> browser P2P (accept click to sound on both
          sides). The fake microphone plays a continuous tone, and a WebAudio analyser on the
          remote <audio> stream sees its first sound.
  relay   K calls at once through the server's relay, each between two aiortc clients (in
          their own processes) sending tone bursts both ways: the server's CPU per relayed call
          (psutil, whole process), and the one-way audio latency (burst sent -> burst heard,
          one system clock) at each K.

  .venv/bin/python -m bench.call_bench setup --runs 5
  .venv/bin/python -m bench.call_bench setup --runs 5 --profile   # + each step's time
  .venv/bin/python -m bench.call_bench relay --calls 1,2,4,6 --seconds 10
  .venv/bin/python -m bench.call_bench suite          # both; results in bench/results/
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import socket
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

RESULTS = ROOT / "bench" / "results"


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(values),
        "median": round(statistics.median(ordered), 1),
        "min": round(ordered[0], 1),
        "max": round(ordered[-1], 1),
    }


# Setup times in Chromium ---------------------------------------------------------------------

# `--profile`: bench/call_profile.js notes each step in the pages (performance.now); these are
# the steps reported, each the first mark matching (page, mark name, text in the mark).
PROFILE_JS = Path(__file__).with_name("call_profile.js")
ECHO_STEPS = [
    ("call.js loaded", "page", "fetch:end", "call.js"),
    ("microphone open", "page", "gum:done", ""),
    ("call:accepted in", "page", "ws<", "call:accepted"),
    ("offer made", "page", ":offerMade", ""),
    ("offer sent", "page", "ws>", "rtc:offer"),
    ("answer in", "page", "ws<", "rtc:answer"),
    ("answer applied", "page", ":setRemoteDone", ""),
    ("ICE connected", "page", ":ice", "connected"),
    ("DTLS connected", "page", ":conn", "connected"),
    ("first audio packet played", "page", ":rtp in", ""),
    ("first sound played (RTP level)", "page", ":sound out", ""),
    ("analyser listening", "page", "LISTENING", ""),
    ("sound heard", "page", "HEARD", ""),
]
P2P_STEPS = [
    ("callee microphone open", "adm", "gum:done", ""),
    ("caller: call:accepted in", "vis", "ws<", "call:accepted"),
    ("caller: offer sent", "vis", "ws>", "rtc:offer"),
    ("callee: offer in", "adm", "ws<", "rtc:offer"),
    ("callee: offer applied", "adm", ":setRemoteDone", ""),
    ("callee: answer made", "adm", ":answerMade", ""),
    ("callee: answer sent", "adm", "ws>", "rtc:answer"),
    ("caller: answer in", "vis", "ws<", "rtc:answer"),
    ("callee: ICE connected", "adm", ":ice", "connected"),
    ("caller: ICE connected", "vis", ":ice", "connected"),
    ("callee: DTLS connected", "adm", ":conn", "connected"),
    ("caller: DTLS connected", "vis", ":conn", "connected"),
    ("callee: first audio packet played", "adm", ":rtp in", ""),
    ("callee: first sound played (RTP level)", "adm", ":sound out", ""),
    ("caller: first audio packet played", "vis", ":rtp in", ""),
    ("caller: first sound played (RTP level)", "vis", ":sound out", ""),
    ("callee: sound heard", "adm", "HEARD", ""),
    ("caller: sound heard", "vis", "HEARD", ""),
]


def profile_steps(
    steps: list[tuple[str, str, str, str]],
    pages: dict[str, tuple[list[Any], float]],
    start: float,
) -> dict[str, float | None]:
    """Each step's time in ms after `start` (ms since the epoch), from the pages' marks."""
    found: dict[str, float | None] = {}
    for label, page, name, text in steps:
        marks, origin = pages[page]
        matching = (m for m in marks if m[1].endswith(name) and text in m[2])
        # Fetches count before the click too: call.js starts loading on the pointer's intent,
        # and a load finished before the click is a negative time, not a missing step.
        early = name.startswith("fetch:")
        at = next((m[0] for m in matching if early or m[0] + origin >= start), None)
        found[label] = None if at is None else round(at + origin - start, 1)
    return found


def print_steps(steps: dict[str, float | None]) -> None:
    for label, at in steps.items():
        print(f"      {'-' if at is None else f'{at:6.1f}':>6} ms  {label}", flush=True)


def step_medians(runs: list[dict[str, float | None]]) -> dict[str, float | None]:
    medians: dict[str, float | None] = {}
    for label in runs[0] if runs else []:
        values = [at for r in runs if (at := r[label]) is not None]
        medians[label] = round(statistics.median(values), 1) if values else None
    return medians


async def marks_of(page: Any, heard: dict[str, Any]) -> list[Any]:
    """A page's profile marks (bench/call_profile.js), plus when its analyser listened and heard."""
    marks: list[Any] = await page.evaluate("window.__callMarks")
    return [*marks, [heard["listening"], "LISTENING", ""], [heard["at"], "HEARD", ""]]


async def bench_setup(runs: int, workdir: Path, *, profile: bool, stun: bool) -> dict[str, Any]:
    from playwright.async_api import Browser, BrowserContext, expect

    from tests.support.browser import chromium
    from tests.support.call_pages import CALL_CHROMIUM_ARGS, CLICKED, HEAR, tone_wav
    from tests.support.clients import admin_login
    from tests.support.pages import DESKTOP, PHONE, sign_in_with, start_chat
    from tests.support.server import scratch_server

    # The pages get a STUN server that never answers (what an unreachable one looks like):
    # trickled candidates must keep it from holding calls up. `--no-stun`: none at all.
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.2", 0))
    env = {
        "ICE_SERVERS": f"stun:127.0.0.2:{silent.getsockname()[1]}" if stun else "none",
        "ECHO_PER_HOUR": "1000",
        "SELFTEST_SKIP": "calls",
    }
    tone = tone_wav(workdir / "tone.wav")
    echo: list[float] = []
    p2p: list[float] = []
    echo_steps: list[dict[str, float | None]] = []
    p2p_steps: list[dict[str, float | None]] = []
    # Every mark of every run (ms since the page's timeOrigin), for what the steps leave out.
    echo_marks: list[Any] = []
    p2p_marks: list[Any] = []

    async def call_context(browser: Browser, options: dict[str, Any]) -> BrowserContext:
        """A page's context: camera and microphone allowed, clicks (and steps) noted."""
        context = await browser.new_context(**options)
        await context.grant_permissions(["microphone", "camera"])
        await context.add_init_script(CLICKED)
        if profile:
            await context.add_init_script(path=str(PROFILE_JS))
        return context

    try:
        async with scratch_server(env) as server:
            admin_token = await admin_login(server)
            args = [*CALL_CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={tone}"]
            async with chromium(args) as browser:
                for run in range(runs):
                    context = await call_context(browser, PHONE)
                    page = await context.new_page()
                    await start_chat(page, server.url, f"Echo{run}")
                    await expect(page.locator("#call-test")).to_be_visible()
                    await page.locator("#call-test").click()
                    found = await page.evaluate(HEAR, 8000)
                    heard = found["at"]
                    clicked = await page.evaluate("window.__callClickedAt")
                    assert heard is not None, "no echo heard"
                    echo.append(heard - clicked)
                    print(f"  browser -> echo, run {run + 1}: {heard - clicked:.0f} ms", flush=True)
                    if profile:
                        origin = await page.evaluate("performance.timeOrigin")
                        marks = await marks_of(page, found)
                        pages = {"page": (marks, origin)}
                        steps = profile_steps(ECHO_STEPS, pages, origin + clicked)
                        echo_steps.append(steps)
                        echo_marks.append(marks)
                        print_steps(steps)
                    await page.locator("#call-hangup").click()
                    await context.close()

                    visitor_ctx = await call_context(browser, PHONE)
                    admin_ctx = await call_context(browser, DESKTOP)
                    await sign_in_with(admin_ctx, server, admin_token)
                    visitor = await visitor_ctx.new_page()
                    admin = await admin_ctx.new_page()
                    await start_chat(visitor, server.url, f"P2P{run}")
                    await admin.goto(server.url + "/admin")
                    # The panel rings only once its /call socket is in (it then shows the mic test).
                    await expect(admin.locator("#call-test")).to_be_visible()
                    await expect(visitor.locator("#call-button")).to_be_enabled()
                    await visitor.locator("#call-button").click()
                    await expect(admin.locator("#call")).to_have_attribute("data-state", "incoming")
                    await admin.locator("#call-accept").click()
                    found_v, found_a = await asyncio.gather(
                        visitor.evaluate(HEAR, 8000), admin.evaluate(HEAR, 8000)
                    )
                    heard_v, heard_a = found_v["at"], found_a["at"]
                    accepted = await admin.evaluate("window.__callClickedAt")
                    # Two pages, two clocks: the visitor's time is moved onto the admin's clock
                    # through each page's performance.timeOrigin.
                    v_origin = await visitor.evaluate("performance.timeOrigin")
                    a_origin = await admin.evaluate("performance.timeOrigin")
                    assert heard_v is not None and heard_a is not None, "P2P: no sound"
                    both = max(heard_a, heard_v + v_origin - a_origin)
                    p2p.append(both - accepted)
                    mode = await admin.locator("#call").get_attribute("data-mode")
                    print(
                        f"  browser <-> browser ({mode}), run {run + 1}: {both - accepted:.0f} ms",
                        flush=True,
                    )
                    if profile:
                        pages = {
                            "vis": (await marks_of(visitor, found_v), v_origin),
                            "adm": (await marks_of(admin, found_a), a_origin),
                        }
                        steps = profile_steps(P2P_STEPS, pages, a_origin + accepted)
                        p2p_steps.append(steps)
                        p2p_marks.append({side: marks for side, (marks, _) in pages.items()})
                        print_steps(steps)
                    await visitor_ctx.close()
                    await admin_ctx.close()
    finally:
        silent.close()
    result = {
        "echo_ms": summary(echo),
        "p2p_ms": summary(p2p),
        "runs": runs,
        "stun": "a STUN server that never answers" if stun else "none",
    }
    if profile:
        # Median time of each step after the click (echo) or the accept click (P2P).
        result["echo_steps_ms"] = step_medians(echo_steps)
        result["p2p_steps_ms"] = step_medians(p2p_steps)
        result["echo_marks"] = echo_marks
        result["p2p_marks"] = p2p_marks
    return result


# Relay CPU and latency -----------------------------------------------------------------------


async def bench_relay(counts: list[int], seconds: float, workdir: Path) -> dict[str, Any]:
    import psutil

    from bench.servers import cpu_seconds
    from tests.support.clients import admin_login, start_visitor
    from tests.support.server import Server

    server = Server(
        database_url=f"sqlite://{workdir / 'relay.db'}",
        workdir=workdir,
        env_extra={
            "CALL_FORCE_RELAY": "1",
            "CALL_RELAY_MAX": str(max(counts)),
            "ICE_SERVERS": "none",
            "SELFTEST_SKIP": "calls",
        },
    )
    await server.start()
    admin_token = await admin_login(server)
    assert server.proc is not None
    # Hypercorn runs the app in a worker process: count the whole tree.
    root = psutil.Process(server.proc.pid)

    def tree_cpu() -> float:
        return cpu_seconds([root, *root.children(recursive=True)])

    ctx = mp.get_context("spawn")
    steps: list[dict[str, Any]] = []
    try:
        idle0 = tree_cpu()
        await asyncio.sleep(3)
        idle_cpu = (tree_cpu() - idle0) / 3
        for count in counts:
            visitors = [await start_visitor(server.url, f"R{count}x{i}") for i in range(count)]
            out, ready, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
            procs = [
                ctx.Process(
                    target=_whole_call,
                    args=(server.url, token, cid, admin_token, ready, stop, out),
                    daemon=True,
                )
                for token, cid in visitors
            ]
            for p in procs:
                p.start()
            # Measure only while every call carries audio both ways.
            flowing = 0
            deadline = time.monotonic() + 90
            while flowing < count and time.monotonic() < deadline:
                try:
                    await asyncio.to_thread(ready.get, True, 1)
                    flowing += 1
                except Exception:
                    continue
            before = tree_cpu()
            started = time.monotonic()
            await asyncio.sleep(seconds)
            cpu = (tree_cpu() - before) / (time.monotonic() - started)
            window = time.monotonic() - started
            stop.set()
            results = []
            for _ in procs:
                try:
                    results.append(await asyncio.to_thread(out.get, True, 60))
                except Exception:
                    break
            for p in procs:
                p.join(10)
                if p.is_alive():
                    p.kill()
            latencies = [x for pair in results for x in pair["latencies"]]
            rates = [f / window for pair in results for f in pair["frames"]]
            errors = [pair["error"] for pair in results if pair.get("error")]
            step = {
                "calls": count,
                "errors": errors[:3],
                "calls_flowing": flowing,
                "server_cpu_core_fraction": round(cpu, 3),
                "cpu_per_call": round((cpu - idle_cpu) / count, 4),
                "frames_per_side_per_s_min": round(min(rates), 1) if rates else 0,
                "latency_ms": summary([x * 1000 for x in latencies]) if latencies else None,
            }
            steps.append(step)
            print(f"  relay {json.dumps(step)}", flush=True)
    finally:
        server.stop()
        if any(step["errors"] for step in steps):
            print("\n".join(line for line in server.log().splitlines() if "call" in line)[-3000:])
    per_call = [s["cpu_per_call"] for s in steps if s["cpu_per_call"] > 0]
    best = statistics.median(per_call) if per_call else None
    return {
        "idle_cpu": round(idle_cpu, 4),
        "steps": steps,
        "calls_per_core_estimate": round(1 / best, 1) if best else None,
    }


def _whole_call(
    base_url: str, token: str, cid: str, admin_token: str, ready: Any, stop: Any, out: Any
) -> None:
    """One relayed call, both parties in this process (their CPU is not the server's)."""
    try:
        result = asyncio.run(_whole_call_async(base_url, token, cid, admin_token, ready, stop))
    except Exception as exc:
        result = {"frames": [], "latencies": [], "error": repr(exc)}
    out.put(result)


async def _whole_call_async(
    base_url: str, token: str, cid: str, admin_token: str, ready: Any, stop: Any
) -> dict[str, Any]:
    """Ring, answer and talk: tone bursts both ways through the relay."""
    from tests.support.calls import call_peer

    visitor = await call_peer(base_url, "visitor", token)
    admin = await call_peer(base_url, "admin", admin_token)
    try:
        ring = await visitor.call("call:ring", {"chat_id": cid})
        assert ring.get("ok"), ring
        await admin.wait_for("call:incoming", lambda m: m["call_id"] == ring["call_id"], 15)
        accepted = await admin.call("call:accept", {"call_id": ring["call_id"]})
        assert accepted.get("ok") and accepted["mode"] == "relay", accepted
        # Both sides count frames from when both hear audio until `stop`; then hang up, close.
        both = asyncio.Barrier(2)
        a, b = await asyncio.gather(
            _side(visitor, ring["call_id"], 880.0, 660.0, both, ready, stop),
            _side(admin, ring["call_id"], 660.0, 880.0, both, None, stop),
        )
        await visitor.call("call:end", {"call_id": ring["call_id"]})
        for side in (a, b):
            await side.pop("media").close()
    finally:
        await visitor.close()
        await admin.close()
    latencies = _match(a["sent"], b["heard"]) + _match(b["sent"], a["heard"])
    return {"frames": [a["frames"], b["frames"]], "latencies": latencies}


async def _side(
    peer: Any,
    call_id: str,
    send_hz: float,
    hear_hz: float,
    both: asyncio.Barrier,
    ready: Any,
    stop: Any,
) -> dict[str, Any]:
    """One party: 200 ms tone bursts every second out; the other party's bursts heard in."""
    from av import AudioFrame

    from media_relay.tone import ToneTrack, tone_ratio
    from tests.support.calls import Media

    class Bursts(ToneTrack):
        def __init__(self) -> None:
            super().__init__(send_hz)
            self.onsets: list[float] = []

        async def recv(self) -> AudioFrame:
            frame = await super().recv()
            position = (self._sent // 960) % 50
            if position == 1:
                self.onsets.append(time.monotonic())
            if position > 10:
                frame.planes[0].update(bytes(frame.planes[0].buffer_size))
            return frame

    bursts = Bursts()
    media = Media(peer, call_id, send_hz, hear_hz, tone=bursts)
    await media.offer()
    track = await asyncio.wait_for(media.remote, 15)
    heard: list[float] = []
    frames = 0
    loud = False
    await asyncio.wait_for(track.recv(), 30)
    await both.wait()
    if ready is not None:
        ready.put(call_id)
    cap = time.monotonic() + 120
    while not stop.is_set() and time.monotonic() < cap:
        frame = await asyncio.wait_for(track.recv(), 5)
        assert isinstance(frame, AudioFrame)
        frames += 1
        is_loud = tone_ratio(frame, hear_hz) > 0.5
        if is_loud and not loud:
            heard.append(time.monotonic())
        loud = is_loud
    return {"sent": bursts.onsets, "heard": heard, "frames": frames, "media": media}


def _match(sent: list[float], heard: list[float]) -> list[float]:
    """Pair each heard burst with the latest burst sent before it (bursts are 1 s apart)."""
    out = []
    for h in heard:
        before = [s for s in sent if s <= h]
        if before and h - before[-1] < 0.9:
            out.append(h - before[-1])
    return out


# Entry ---------------------------------------------------------------------------------------


def save(kind: str, result: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(result, indent=2)
    (RESULTS / f"{stamp}-calls-{kind}.json").write_text(text)
    (RESULTS / f"latest-calls-{kind}.json").write_text(text)
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("command", choices=["setup", "relay", "suite"])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="setup: time of each step")
    parser.add_argument("--no-stun", action="store_true", help="setup: pages get no STUN server")
    parser.add_argument("--calls", default="1,2,4,6")
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()

    from tests.support import netns

    why = netns.unavailable()
    if why:
        sys.exit(why)
    with netns.private_network(), tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        result: dict[str, Any] = {
            "when": datetime.now(UTC).isoformat(),
            "cores": mp.cpu_count(),
            # Other work on the machine shows in the figures: note how busy it was.
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        }
        if args.command in ("setup", "suite"):
            result["setup"] = asyncio.run(
                bench_setup(args.runs, workdir, profile=args.profile, stun=not args.no_stun)
            )
        if args.command in ("relay", "suite"):
            counts = [int(c) for c in args.calls.split(",")]
            result["relay"] = asyncio.run(bench_relay(counts, args.seconds, workdir))
        save(args.command, result)


if __name__ == "__main__":
    main()
