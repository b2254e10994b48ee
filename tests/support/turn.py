"""Calls through a TURN server: Debian's coturn as a child process, and a network where the
visitor's UDP is dropped.

Built inside the call tests' private namespace (the "core": the Sohbet server, coturn and the
test's signalling sockets live there). Two named namespaces hang off it on veth pairs: the
visitor's (10.77.1.2, every UDP packet dropped in and out by nftables) and the operator's
(10.77.2.2). coturn listens on the core's side of the visitor's link (10.77.1.1), which the
operator reaches through the core too. `symmetric_nat` instead puts each party on a private
network behind a NAT router namespace of its own. A party's media sockets are made inside its
namespace (`inside`, around the step that gathers ICE candidates); sockets keep their namespace
for life.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiortc import RTCPeerConnection

from tests.support.calls import Media, ice_config
from tests.support.clients import Peer

CLONE_NEWNET = 0x40000000
TURN_ADDRESS = "10.77.1.1"
TURN_PORT = 3478
TURNS_PORT = 443
RELAY_PORTS = (49160, 49259)


def unavailable() -> str | None:
    """Why the TURN topology can't be built here (None when it can)."""
    tools = (
        ("turnserver", "coturn"),
        ("nft", "nftables"),
        ("ip", "iproute2"),
        ("openssl", "openssl"),
    )
    for tool, package in tools:
        if shutil.which(tool) is None:
            return f"TURN tests need Debian's {package} (scripts/test-services.sh installs it)"
    return None


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


@dataclass(frozen=True)
class Topology:
    """The named namespaces of the two parties and the addresses they have."""

    visitor_ns: str
    operator_ns: str
    visitor_address: str = "10.77.1.2"
    operator_address: str = "10.77.2.2"


@contextmanager
def udp_blocked_visitor() -> Iterator[Topology]:
    """Make the visitor's namespace (no UDP at all) and the operator's, linked to this one."""
    tag = f"{os.getpid() % 100000}"
    top = Topology(visitor_ns=f"sohbet-vis-{tag}", operator_ns=f"sohbet-op-{tag}")
    links = ((top.visitor_ns, "10.77.1", f"sv{tag}"), (top.operator_ns, "10.77.2", f"so{tag}"))
    made: list[str] = []
    try:
        for ns, net, veth in links:
            _sh("ip", "netns", "add", ns)
            made.append(ns)
            _link(None, veth, ns, "eth0", net)
            _sh("ip", "-n", ns, "route", "add", "default", "via", f"{net}.1")
        # What a network that blocks UDP looks like: nothing in, nothing out.
        rules = (
            "table inet no_udp {\n"
            " chain in { type filter hook input priority 0; meta l4proto udp drop; }\n"
            " chain out { type filter hook output priority 0; meta l4proto udp drop; }\n"
            "}\n"
        )
        _nft(top.visitor_ns, rules)
        yield top
    finally:
        for ns in made:
            # Deleting a namespace removes its veth end, and with it the pair.
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def _link(near_ns: str | None, near: str, far_ns: str, far: str, net: str) -> None:
    """A veth pair: `near` (net.1, in `near_ns` or this namespace) to `far` (net.2, in `far_ns`)."""
    here = () if near_ns is None else ("-n", near_ns)
    _sh("ip", *here, "link", "add", near, "type", "veth", "peer", "name", far, "netns", far_ns)
    _sh("ip", *here, "addr", "add", f"{net}.1/24", "dev", near)
    _sh("ip", *here, "link", "set", near, "up")
    _sh("ip", "-n", far_ns, "link", "set", "lo", "up")
    _sh("ip", "-n", far_ns, "addr", "add", f"{net}.2/24", "dev", far)
    _sh("ip", "-n", far_ns, "link", "set", far, "up")


def _nft(ns: str | None, rules: str) -> None:
    """Load nftables rules in the named namespace (or this one)."""
    where = () if ns is None else ("ip", "netns", "exec", ns)
    subprocess.run(
        [*where, "nft", "-f", "-"], input=rules.encode(), check=True, capture_output=True
    )


@dataclass(frozen=True)
class NatTopology(Topology):
    """Each party on a private network behind a NAT router of its own; the routers' public
    addresses reach each other (and coturn) through this namespace."""

    visitor_public: str = "10.77.3.2"
    operator_public: str = "10.77.4.2"

    def routers(self) -> Topology:
        """The two NAT routers as parties of their own: on the public addresses, no NAT."""
        return Topology(
            visitor_ns=f"{self.visitor_ns}-r",
            operator_ns=f"{self.operator_ns}-r",
            visitor_address=self.visitor_public,
            operator_address=self.operator_public,
        )


# A NAT that picks a fresh random port for every new (source, destination) pair: the mapping
# depends on the destination's address and port, which is what "symmetric" means (RFC 4787).
SYMMETRIC_NAT = (
    "table ip nat {\n"
    " chain post { type nat hook postrouting priority srcnat; oifname wan masquerade fully-random; }\n"
    "}\n"
)


@contextmanager
def symmetric_nat() -> Iterator[NatTopology]:
    """Visitor (192.168.3.2) and operator (192.168.4.2), each behind a symmetric NAT router
    whose public side (10.77.3.2, 10.77.4.2) hangs off this namespace, which forwards between
    them: direct packets between the two routers are routed, only the NATs stand in the way."""
    tag = f"{os.getpid() % 100000}"
    top = NatTopology(
        visitor_ns=f"sohbet-nv-{tag}",
        operator_ns=f"sohbet-no-{tag}",
        visitor_address="192.168.3.2",
        operator_address="192.168.4.2",
    )
    routers = top.routers()
    sides = ((top.visitor_ns, routers.visitor_ns, "3"), (top.operator_ns, routers.operator_ns, "4"))
    forwarding = Path("/proc/sys/net/ipv4/ip_forward")
    was_forwarding = forwarding.read_text().strip()
    made: list[str] = []
    made_links: list[str] = []
    try:
        forwarding.write_text("1\n")  # this (private) namespace routes router to router
        # Private addresses lead nowhere, silently, as on the internet: an unroutable one would
        # fail coturn's sends at once, and coturn then refuses the allocation's channel binds.
        # (Into a link whose far end takes nothing: a known neighbour, so no ARP and no error.)
        void, sink = f"nw{tag}", f"nx{tag}"
        _sh("ip", "link", "add", void, "type", "veth", "peer", "name", sink)
        made_links.append(void)
        _sh("ip", "addr", "add", "10.77.9.1/24", "dev", void)
        for link in (void, sink):
            _sh("ip", "link", "set", link, "up")
        _sh("ip", "neigh", "add", "10.77.9.2", "lladdr", "02:00:00:77:09:02", "dev", void)
        _sh("ip", "route", "add", "192.168.0.0/16", "via", "10.77.9.2")
        for ns, router, n in sides:
            for name in (router, ns):
                _sh("ip", "netns", "add", name)
                made.append(name)
            _link(None, f"sn{n}{tag}", router, "wan", f"10.77.{n}")
            _link(router, "lan", ns, "eth0", f"192.168.{n}")
            _sh("ip", "-n", router, "route", "add", "default", "via", f"10.77.{n}.1")
            _sh("ip", "-n", ns, "route", "add", "default", "via", f"192.168.{n}.1")
            _sh("ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            _nft(router, SYMMETRIC_NAT)
        yield top
    finally:
        for ns in reversed(made):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        for link in made_links:
            subprocess.run(["ip", "link", "del", link], check=False, capture_output=True)
        forwarding.write_text(was_forwarding + "\n")


def mapped_ports(ns: str, server_ip: str, count: int = 3) -> list[tuple[str, int]]:
    """The public address one UDP socket in `ns` shows to `count` different ports of
    `server_ip` (an address of this namespace): what a STUN server on each would see."""
    reflectors = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
    seen: list[tuple[str, int]] = []
    try:
        for reflector in reflectors:
            reflector.bind((server_ip, 0))
            reflector.settimeout(5)
        with inside(ns):
            client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with client:
            for reflector in reflectors:
                client.sendto(b"where am I", reflector.getsockname())
                _, source = reflector.recvfrom(64)
                seen.append(source)
    finally:
        for reflector in reflectors:
            reflector.close()
    return seen


@contextmanager
def inside(ns: str) -> Iterator[None]:
    """Run the body with this thread in the named namespace (sockets made now stay there)."""
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {ns}")
        try:
            yield
        finally:
            if libc.setns(home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(target)
        os.close(home)


def coturn_config(workdir: Path, secret: str, *, tls: tuple[Path, Path] | None = None) -> Path:
    """A coturn configuration as the README's "Production" gives it, on the test's addresses."""
    lines = [
        f"listening-ip={TURN_ADDRESS}",
        f"relay-ip={TURN_ADDRESS}",
        f"listening-port={TURN_PORT}",
        f"min-port={RELAY_PORTS[0]}",
        f"max-port={RELAY_PORTS[1]}",
        "use-auth-secret",
        f"static-auth-secret={secret}",
        "realm=sohbet.test",
        "fingerprint",
        "no-cli",
        "no-dtls",
        "no-multicast-peers",
        "denied-peer-ip=0.0.0.0-0.255.255.255",
        "denied-peer-ip=127.0.0.0-127.255.255.255",
        f"pidfile={workdir / 'turnserver.pid'}",
        f"log-file={workdir / 'turnserver.log'}",
        "simple-log",
        "no-stdout-log",
    ]
    if tls is None:
        lines.append("no-tls")
    else:
        cert, key = tls
        lines += [f"tls-listening-port={TURNS_PORT}", f"cert={cert}", f"pkey={key}"]
    path = workdir / "turnserver.conf"
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass(frozen=True)
class Coturn:
    """A running coturn: its TURN/TCP and TURN/TLS URLs, and the CA file that trusts its
    self-signed certificate."""

    tcp_url: str
    tls_url: str
    ca_file: Path


def self_signed(workdir: Path) -> tuple[Path, Path]:
    """A certificate for the TURN address (an IP SAN, as clients check it) and its key."""
    cert, key = workdir / "turn.crt", workdir / "turn.key"
    _sh(
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", str(key), "-out", str(cert), "-subj", "/CN=turn.sohbet.test",
        "-addext", f"subjectAltName=IP:{TURN_ADDRESS}",
    )  # fmt: skip
    return cert, key


@contextmanager
def coturn(workdir: Path, secret: str) -> Iterator[Coturn]:
    """Run `turnserver` as a child with its own configuration: TCP on 3478, TLS on 443."""
    workdir.mkdir(parents=True, exist_ok=True)
    cert, key = self_signed(workdir)
    conf = coturn_config(workdir, secret, tls=(cert, key))
    proc = subprocess.Popen(
        ["turnserver", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 15
        for port in (TURN_PORT, TURNS_PORT):
            while True:
                assert proc.poll() is None, f"turnserver exited: {_tail(workdir)}"
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection((TURN_ADDRESS, port), timeout=0.5),
                ):
                    break
                assert time.monotonic() < deadline, f"turnserver not on {port}: {_tail(workdir)}"
                time.sleep(0.05)
        yield Coturn(
            tcp_url=f"turn:{TURN_ADDRESS}:{TURN_PORT}?transport=tcp",
            tls_url=f"turns:{TURN_ADDRESS}:{TURNS_PORT}?transport=tcp",
            ca_file=cert,
        )
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _tail(workdir: Path) -> str:
    log = workdir / "turnserver.log"
    return log.read_text(errors="replace")[-1500:] if log.exists() else "(no log)"


def only_url(servers: list[dict[str, Any]], scheme: str) -> list[dict[str, Any]]:
    """Sohbet's `ice_servers` narrowed to the URLs of one scheme ("turn:", "turns:"): aiortc
    uses only the first TURN URL it is given, where a browser tries every one."""
    narrowed = []
    for server in servers:
        urls = [u for u in server["urls"] if u.startswith(scheme)]
        if urls:
            narrowed.append({**server, "urls": urls})
    return narrowed


class NamespacedMedia(Media):
    """A party's aiortc connection with Sohbet's ICE servers, its sockets in namespace `ns`."""

    def __init__(
        self,
        peer: Peer,
        call_id: str,
        send_hz: float,
        hear_hz: float,
        *,
        ns: str,
        ice_servers: list[dict[str, Any]],
    ) -> None:
        super().__init__(peer, call_id, send_hz, hear_hz, ice_servers=ice_servers)
        self.ns = ns
        self.connected = asyncio.get_running_loop().create_future()
        self.pc.on("connectionstatechange", self._on_state)

    def _on_state(self) -> None:
        if self.pc.connectionState == "connected" and not self.connected.done():
            self.connected.set_result(time.monotonic())

    def _gathering(self) -> contextlib.AbstractContextManager[None]:
        """Gather in the namespace: the candidates' sockets are made there."""
        return inside(self.ns)

    def candidate_types(self) -> set[str]:
        """The types of the local candidates in our description ("host", "relay", ...)."""
        local = self.pc.localDescription
        sdp = local.sdp if local is not None else ""
        return {
            line.split(" typ ")[1].split()[0]
            for line in sdp.splitlines()
            if line.startswith("a=candidate:") and " typ " in line
        }

    def pair(self) -> tuple[str, str] | None:
        """The selected pair's local and remote candidate types, once connected."""
        for transceiver in self.pc.getTransceivers():
            ice = transceiver.receiver.transport.transport
            pair = ice._connection._nominated.get(1)  # aioice keeps the chosen pair per component
            if pair is not None:
                return pair.local_candidate.type, pair.remote_candidate.type
        return None


def call_parties(
    top: Topology,
    visitor: Peer,
    admin: Peer,
    call_id: str,
    hz: tuple[float, float],
    scheme: str | None = None,
) -> tuple[NamespacedMedia, NamespacedMedia]:
    """The visitor's and the operator's connections in their namespaces, sending hz[0] and
    hz[1] (each listening for the other's), with the ICE servers each side's `call:accepted`
    gave (narrowed to the URLs of `scheme` if given)."""

    def servers(peer: Peer) -> list[dict[str, Any]]:
        given: list[dict[str, Any]] = peer.events["call:accepted"][0]["ice_servers"]
        return only_url(given, scheme) if scheme else given

    visitor_media = NamespacedMedia(
        visitor, call_id, hz[0], hz[1], ns=top.visitor_ns, ice_servers=servers(visitor)
    )
    admin_media = NamespacedMedia(
        admin, call_id, hz[1], hz[0], ns=top.operator_ns, ice_servers=servers(admin)
    )
    return visitor_media, admin_media


def without_turn(servers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sohbet's `ice_servers` with the TURN entries left out (STUN only: direct paths only)."""
    return [s for s in servers if not any(u.startswith(("turn:", "turns:")) for u in s["urls"])]


async def direct_attempt(
    top: Topology, ice_servers: list[dict[str, Any]]
) -> tuple[RTCPeerConnection, RTCPeerConnection]:
    """Two connections (a data channel only), the visitor's and the operator's, gathering in
    their namespaces, their offer and answer handed over in process; returned checking."""
    visitor, operator = (RTCPeerConnection(ice_config(ice_servers)) for _ in range(2))
    visitor.createDataChannel("probe")
    with inside(top.visitor_ns):
        await visitor.setLocalDescription(await visitor.createOffer())
    await operator.setRemoteDescription(visitor.localDescription)
    with inside(top.operator_ns):
        await operator.setLocalDescription(await operator.createAnswer())
    await visitor.setRemoteDescription(operator.localDescription)
    return visitor, operator


def sdp_candidates(pc: RTCPeerConnection) -> list[tuple[str, str]]:
    """The (type, address) of each local candidate in a connection's description."""
    local = pc.localDescription
    found = []
    for line in (local.sdp if local is not None else "").splitlines():
        if line.startswith("a=candidate:"):
            fields = line.split()
            found.append((fields[fields.index("typ") + 1], fields[4]))
    return found
