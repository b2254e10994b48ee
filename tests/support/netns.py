"""A private network namespace for call tests: loopback up, plus 127.0.0.2 for WebRTC.

aiortc never offers 127.0.0.1 and Chromium ignores loopback unless told, so calls are tested in
a namespace of their own where `lo` also carries 127.0.0.2. Nothing in it can reach any other
address. Linux namespaces are per thread: the namespace is entered by the test's (main) thread,
so the server, Chromium and every socket the event loop opens from then on live in it; leaving
switches the thread back.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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


def _forward(libc: ctypes.CDLL, home: int, listener: socket.socket, port: int) -> None:
    """Accept in the private namespace, connect in the home one, copy bytes both ways."""
    if libc.setns(home, CLONE_NEWNET) != 0:  # this thread only
        return
    while True:
        try:
            inside, _ = listener.accept()
        except OSError:
            return  # the listener was closed: the namespace is going away
        try:
            outside = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            inside.close()
            continue
        outside.settimeout(None)
        for src, dst in ((inside, outside), (outside, inside)):
            threading.Thread(target=_pump, args=(src, dst), daemon=True).start()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@contextmanager
def private_network(forward: tuple[int, ...] = ()) -> Iterator[str]:
    """Run the body in a fresh network namespace; yields the media address (127.0.0.2).

    `forward` lists TCP ports of the home namespace's 127.0.0.1 (PostgreSQL's 5432) that stay
    reachable at the same address inside, through a forwarding thread.
    """
    libc = _libc()
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        if libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
        try:
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
            subprocess.run(["ip", "addr", "add", f"{MEDIA_ADDRESS}/8", "dev", "lo"], check=True)
            listeners = []
            for port in forward:
                listener = socket.create_server(("127.0.0.1", port))
                listeners.append(listener)
                threading.Thread(
                    target=_forward, args=(libc, home, listener, port), daemon=True
                ).start()
            try:
                yield MEDIA_ADDRESS
            finally:
                for listener in listeners:
                    with contextlib.suppress(OSError):
                        listener.shutdown(socket.SHUT_RDWR)
                    listener.close()
        finally:
            if libc.setns(home, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns back: {os.strerror(err)}")
    finally:
        os.close(home)


@contextmanager
def own_default_executor() -> Iterator[None]:
    """Give the running loop a thread pool of its own while the body runs, and a new one after.

    A thread starts in the namespace of the thread that made it: worker threads the loop's
    default executor starts while the main thread is in a private namespace would stay there,
    and a later test's `asyncio.to_thread(...)` (a health probe, a subprocess) would run in a
    namespace that no longer has anything in it ("connection refused").
    """
    loop = asyncio.get_running_loop()
    inside = ThreadPoolExecutor(thread_name_prefix="netns")
    loop.set_default_executor(inside)
    try:
        yield
    finally:
        inside.shutdown(wait=False, cancel_futures=True)
        loop.set_default_executor(ThreadPoolExecutor())
