"""A real NAT for tests: three network namespaces and nftables masquerading (needs root).

    with nat_network() as net:
        net.run("bot", [...])             # argv run inside the bot's namespace
        net.prefix("pbx")                 # ["ip", "netns", "exec", NAME] for Popen
        net.PBX_IP, net.PUBLIC_IP, net.BOT_IP

    pbx  10.99.0.1 ──veth── 10.99.0.2  nat  192.168.99.1 ──veth── 192.168.99.2  bot
         (the "internet": registrar, callers)   masquerade out     (behind the NAT)

Only addresses inside namespaces this module creates are used; everything is removed on
exit. The NAT's UDP mappings last `udp_timeout_s` seconds without traffic (Linux conntrack,
set in the nat namespace), so a test can see whether keepalives hold one open.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass


def nat_available() -> str:
    """'' when this machine can build the NAT, else why not."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            return f"{tool} is not installed (scripts/install-system-deps.sh installs nftables)"
    probe = f"tbprobe{os.getpid()}"  # root in a container may still lack CAP_NET_ADMIN
    try:
        _ip("netns", "add", probe)
    except (subprocess.SubprocessError, OSError) as exc:
        return f"cannot create a network namespace here ({exc})"
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        _ip("netns", "del", probe)
    return ""


@dataclass(frozen=True)
class NatNetwork:
    tag: str
    PBX_IP = "10.99.0.1"
    PUBLIC_IP = "10.99.0.2"
    BOT_IP = "192.168.99.2"

    def ns(self, role: str) -> str:
        return f"{self.tag}{role}"

    def prefix(self, role: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns(role)]

    def run(self, role: str, argv: Sequence[str], **kw: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.prefix(role), *argv], check=True, capture_output=True,
                              text=True, timeout=30, **kw)  # type: ignore[call-overload]  # fmt: skip

    def conntrack_udp(self) -> str:
        """The NAT's UDP mappings (/proc), one per line."""
        out = self.run("nat", ["cat", "/proc/net/nf_conntrack"]).stdout
        return "\n".join(ln for ln in out.splitlines() if " udp " in ln)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@contextmanager
def nat_network(udp_timeout_s: int = 6) -> Iterator[NatNetwork]:
    net = NatNetwork(f"tb{os.getpid() % 100000}")
    a, b, c, d = (f"{net.tag}{x}" for x in "abcd")
    created: list[str] = []
    try:
        for role in ("pbx", "nat", "bot"):
            _ip("netns", "add", net.ns(role))
            created.append(net.ns(role))
            _ip("-n", net.ns(role), "link", "set", "lo", "up")
        _ip("link", "add", a, "type", "veth", "peer", "name", b)
        _ip("link", "set", a, "netns", net.ns("pbx"))
        _ip("link", "set", b, "netns", net.ns("nat"))
        _ip("link", "add", c, "type", "veth", "peer", "name", d)
        _ip("link", "set", c, "netns", net.ns("nat"))
        _ip("link", "set", d, "netns", net.ns("bot"))
        for role, dev, addr in (
            ("pbx", a, f"{net.PBX_IP}/24"),
            ("nat", b, f"{net.PUBLIC_IP}/24"),
            ("nat", c, "192.168.99.1/24"),
            ("bot", d, f"{net.BOT_IP}/24"),
        ):
            _ip("-n", net.ns(role), "addr", "add", addr, "dev", dev)
            _ip("-n", net.ns(role), "link", "set", dev, "up")
        _ip("-n", net.ns("bot"), "route", "add", "default", "via", "192.168.99.1")
        net.run("nat", ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        for key in ("nf_conntrack_udp_timeout", "nf_conntrack_udp_timeout_stream"):
            net.run("nat", ["sysctl", "-qw", f"net.netfilter.{key}={udp_timeout_s}"])
        rules = (
            "table ip nat {\n"
            "  chain post {\n"
            "    type nat hook postrouting priority 100;\n"
            f'    oifname "{b}" masquerade\n'
            "  }\n"
            "}\n"
        )
        net.run("nat", ["nft", "-f", "-"], input=rules)
        yield net
    finally:
        for name in created:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
