"""Two hbd nodes that speak only IPv6 to each other: ucast6 and mcast6 paths, a ping6
witness, and an IPv6 service address (`IPv6addr::fd94::100/64/eth0`).

alpha, beta and a router `gw` share one segment (a bridge); the nodes have fd94::1 and
fd94::2, gw fd94::3 (the ping6 witness). No IPv4 path is configured. The scenario: both
nodes see each other over both paths and the witness answers over ICMPv6; alpha holds the
group; alpha's hbd dies while its box keeps the address, which beta's probe still hears
over ICMPv6 (and the link-local address it heard alpha's mcast6 frames from), so beta
leaves the group alone; the addresses go (the box is reset) and beta takes it over, with
DAD and unsolicited neighbour advertisements. Sources change on the way (the service
address becomes the newest of its prefix): no node calls that a clone.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster import AUTHKEYS, HbdNode, wait_for
from netns import Netns, lan, namespace, requires_root

pytestmark = [pytest.mark.root, pytest.mark.slow, requires_root]

ADDR = {"alpha": "fd94::1", "beta": "fd94::2"}
GW = "fd94::3"
VIP6 = "fd94::100"
GROUP = f"IPv6addr::{VIP6}/64/eth0"
MGROUP = "ff12::1:694"
DEADTIME = 1.0


def hacf(local: str) -> str:
    peer = next(n for n in ADDR if n != local)
    return "\n".join(
        [
            "keepalive 200ms",
            "deadtime 1",
            "warntime 600ms",
            "initdead 3",
            "auto_failback on",
            f"ucast6 eth0 {ADDR[peer]}",
            f"mcast6 eth0 {MGROUP} 694 1 0",
            f"ping6 {GW}",
            "node alpha beta",
            "",
        ]
    )


@contextlib.contextmanager
def ipv6_cluster(tmp_path: Path) -> Iterator[tuple[dict[str, HbdNode], Netns]]:
    with (
        namespace("alpha") as a,
        namespace("beta") as b,
        namespace("gw") as gw,
        lan([a, b, gw], "10.94.0.0/24"),
    ):
        for ns, address in ((a, ADDR["alpha"]), (b, ADDR["beta"]), (gw, GW)):
            ns.ip("-6", "addr", "add", f"{address}/64", "dev", "eth0", "nodad")
        # mcast6 to a link-scope group leaves from the link-local address once its DAD is
        # done (from the global one until then): wait, so every run sees the same sources
        wait_for(
            lambda: all(link_local(ns) for ns in (a, b)) or None,
            10,
            "the nodes' link-local addresses to finish DAD",
        )
        nodes = {"alpha": HbdNode("alpha", a, tmp_path / "alpha")}
        nodes["beta"] = HbdNode("beta", b, tmp_path / "beta")
        for name, node in nodes.items():
            node.write_config(hacf(name), AUTHKEYS["sha1"])
            node.write_haresources(f"alpha {GROUP}\n")
        try:
            yield nodes, gw
        except BaseException:
            for node in nodes.values():
                print(f"---- {node.name} status ----\n{node.status()}")
                print(f"---- {node.name} log ----\n{node.log()[-3000:]}")
            raise
        finally:
            for node in nodes.values():
                node.kill()


def up_everywhere(node: HbdNode, peer: str) -> dict[str, Any] | None:
    """node's status once it sees `peer` active over both IPv6 paths and its witness up."""
    status = node.status()
    if status is None:
        return None
    view = status["nodes"].get(peer)
    if view is None or view["status"] != "active":
        return None
    paths = {p: v["status"] for p, v in view["paths"].items()}
    witness = status["ping_nodes"].get(f"ping:{GW}", {}).get("status")
    ok = paths == {f"ucast6:eth0:{ADDR[peer]}": "up", f"mcast6:eth0:{MGROUP}": "up"}
    return status if ok and witness == "up" else None


def link_local(ns: Netns) -> str | None:
    """ns's link-local address on eth0 once usable (DAD done), with its scope."""
    out = ns.ip("-6", "-o", "addr", "show", "dev", "eth0", "scope", "link").stdout
    if not out or "tentative" in out:
        return None
    return f"{out.split()[3].split('/')[0]}%eth0"


def holder(node: HbdNode) -> tuple[str | None, str] | None:
    g = node.group(GROUP)
    return None if g is None else (g["holder"], g["state"])


def has_vip(ns: Netns) -> bool:
    return f"inet6 {VIP6}/64" in ns.ip("-6", "-o", "addr", "show", "dev", "eth0").stdout


def test_an_ipv6_only_pair_heartbeats_probes_its_address_over_icmpv6_and_takes_over(
    tmp_path: Path,
) -> None:
    with ipv6_cluster(tmp_path) as (nodes, _gw):
        alpha, beta = nodes["alpha"], nodes["beta"]
        alpha.start()
        beta.start()
        _, took = wait_for(
            lambda: up_everywhere(alpha, "beta") and up_everywhere(beta, "alpha"),
            15,
            "both nodes up over ucast6 and mcast6, ping6 witness up",
        )
        print(f"TIMING IPv6 paths and witness up {took:.2f} s after start")
        _, took = wait_for(
            lambda: True if holder(alpha) == ("alpha", "started") else None,
            15,
            "alpha to hold the IPv6 group",
        )
        assert has_vip(alpha.ns) and not has_vip(beta.ns)
        assert holder(beta) == ("alpha", "stopped")
        # beta probes alpha's addresses, the link-local one on the interface it was heard
        # on; the service address, which alpha's ucast6 frames now leave from, is the
        # group's, not alpha's
        probes = {p["address"]: p["of"] for p in (beta.status() or {})["probes"]}
        assert probes.get(ADDR["alpha"]) == "alpha", probes
        assert probes.get(link_local(alpha.ns) or "?") == "alpha", probes
        assert probes.get(VIP6) == f"group:{GROUP}", probes

        # alpha's hbd dies, its box keeps the address: beta's ICMPv6 probe still hears it
        alpha.kill()
        wait_for(
            lambda: True if (beta.status() or {})["nodes"]["alpha"]["status"] == "dead" else None,
            DEADTIME + 3,
            "beta to declare alpha dead",
        )
        time.sleep(4 * DEADTIME)  # the claim is that nothing happens
        assert has_vip(alpha.ns) and not has_vip(beta.ns)
        reasons = " | ".join(d["reason"] for d in beta.decisions())
        assert "alpha is silent on every path but its address answers" in reasons, reasons

        # the box is reset: its addresses go, link-local too, beta takes the group over
        gone = time.monotonic()
        alpha.ns.ip("-6", "addr", "flush", "dev", "eth0")
        wait_for(
            lambda: True if holder(beta) == ("beta", "started") else None,
            DEADTIME + 10,
            "beta to take the group over",
        )
        print(f"TIMING address silent -> beta holds it {time.monotonic() - gone:.2f} s")
        assert has_vip(beta.ns) and not has_vip(alpha.ns)
        assert "5 unsolicited neighbour advertisements" in beta.log()
        # the sources changed (global, link-local, the service address): one host each
        for node in (alpha, beta):
            assert "two sources claim" not in node.log(), node.log()
        assert beta.stop() == 0
        assert not has_vip(beta.ns)
