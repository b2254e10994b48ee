"""Lighthouse (mobile preset) on the visitor page, in Debian's Chromium.

    npm install --no-save lighthouse        # once, anywhere; or have `lighthouse` on PATH
    LIGHTHOUSE=node_modules/.bin/lighthouse .venv/bin/python -m bench.lighthouse [--runs 3]

Starts a server like the tests do (fresh SQLite), opens a conversation with a short exchange
(so the page shows what a visitor sees), and runs Lighthouse's default mobile configuration
(emulated phone, simulated slow 4G and 4x CPU slowdown) with the visitor's cookie. Prints the
performance, accessibility, best-practices and SEO scores of each run and the median, plus the
main performance metrics. CHROME_PATH defaults to /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from tests.support.browser import CHROMIUM
from tests.support.clients import (
    VISITOR_COOKIE,
    admin_login,
    admin_peer,
    client_id,
    start_visitor,
    visitor_peer,
)
from tests.support.server import Server, scratch_server

CATEGORIES = ("performance", "accessibility", "best-practices", "seo")
METRICS = (
    "first-contentful-paint",
    "largest-contentful-paint",
    "total-blocking-time",
    "cumulative-layout-shift",
    "speed-index",
)
CHROME_FLAGS = "--headless=new --no-sandbox --disable-gpu --no-first-run --disable-sync"


async def conversation(server: Server) -> str:
    """A visitor with a few messages both ways; returns the visitor's cookie token."""
    token, cid = await start_visitor(server.url, "Ayşe")
    admin = await admin_peer(server.url, await admin_login(server))
    visitor = await visitor_peer(server.url, token)
    try:
        for peer, text in (
            (visitor, "Merhaba, siparişim ne zaman kargoya verilir?"),
            (admin, "Merhaba Ayşe Hanım, bugün kargoya veriliyor."),
            (visitor, "Teşekkürler 🙏"),
        ):
            await peer.call("send", {"chat_id": cid, "text": text, "client_id": client_id()})
    finally:
        await visitor.close()
        await admin.close()
    return token


def lighthouse(binary: str, url: str, *flags: str) -> dict[str, Any]:
    """One Lighthouse run of url in Debian's Chromium with extra flags; its JSON report."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        env = {**os.environ, "CHROME_PATH": os.environ.get("CHROME_PATH", CHROMIUM)}
        subprocess.run(
            [
                binary,
                url,
                "--quiet",
                "--output=json",
                f"--output-path={out}",
                f"--chrome-flags={CHROME_FLAGS}",
                *flags,
            ],
            check=True,
            env=env,
            timeout=300,
        )
        report: dict[str, Any] = json.loads(out.read_text())
    return report


async def main(runs: int, binary: str) -> None:
    async with scratch_server() as server:
        token = await conversation(server)
        flags = (
            f"--extra-headers={json.dumps({'Cookie': f'{VISITOR_COOKIE}={token}'})}",
            "--only-categories=" + ",".join(CATEGORIES),
        )
        reports = [
            await asyncio.to_thread(lighthouse, binary, server.url + "/", *flags)
            for _ in range(runs)
        ]
    chrome = re.search(r"Chrome/([\d.]+)", reports[0]["environment"]["hostUserAgent"])
    print(f"Lighthouse {reports[0]['lighthouseVersion']}, Chromium {chrome and chrome.group(1)}")
    header = " ".join(f"{c:>15}" for c in CATEGORIES)
    print(f"{'run':>4} {header}")
    scores: dict[str, list[int]] = {c: [] for c in CATEGORIES}
    for n, report in enumerate(reports, 1):
        row = []
        for c in CATEGORIES:
            score = round(report["categories"][c]["score"] * 100)
            scores[c].append(score)
            row.append(f"{score:>15}")
        print(f"{n:>4} {' '.join(row)}")
    print(f"{'med':>4} " + " ".join(f"{statistics.median(scores[c]):>15}" for c in CATEGORIES))
    last = reports[-1]["audits"]
    for metric in METRICS:
        print(f"  {metric}: {last[metric]['displayValue']}")
    for category in CATEGORIES:
        failed = [
            ref["id"]
            for ref in reports[-1]["categories"][category]["auditRefs"]
            if ref["weight"] and (last[ref["id"]].get("score") or 0) < 0.9
        ]
        if failed:
            print(f"  {category} below 0.9: {', '.join(failed)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.runs, os.environ.get("LIGHTHOUSE", "lighthouse")))
