"""A private network namespace for call tests: loopback up, plus 127.0.0.2 for WebRTC.

aiortc never offers 127.0.0.1 and Chromium ignores loopback unless told, so calls are tested in
a namespace of their own where `lo` also carries 127.0.0.2. Nothing in it can reach any other
address. Linux namespaces are per thread: the namespace is entered by the test's (main) thread,
so the server, Chromium and every socket the event loop opens from then on live in it; leaving
switches the thread back.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

CLONE_NEWNET = 0x40000000
MEDIA_ADDRESS = "127.0.0.2"


def unavailable() -> str | None:
    """Why a private namespace can't be made here (None when it can)."""
    if os.geteuid() != 0:
        return "call tests need root for a private network namespace (unshare -n)"
    if shutil.which("ip") is None:
        return "call tests need iproute2's `ip` (scripts/test-services.sh installs it)"
    probe = subprocess.run(
        ["unshare", "-n", "ip", "link", "set", "lo", "up"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        return f"no private network namespace here: {probe.stderr.decode(errors='replace')[:200]}"
    return None


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


@contextmanager
def private_network() -> Iterator[str]:
    """Run the body in a fresh network namespace; yields the media address (127.0.0.2)."""
    libc = _libc()
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        if libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
        try:
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
            subprocess.run(["ip", "addr", "add", f"{MEDIA_ADDRESS}/8", "dev", "lo"], check=True)
            yield MEDIA_ADDRESS
        finally:
            if libc.setns(home, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns back: {os.strerror(err)}")
    finally:
        os.close(home)
