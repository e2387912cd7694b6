"""A whole hbd Node beside a scripted Heartbeat 3.0.6 peer (no namespaces).

`hb1` is played by this test: Heartbeat-format `t=status` frames without hbd's `hbdwd`
(so the node knows it for a Heartbeat node) and the resource protocol's messages, signed
with the vectors' sha1 key. The node, `hb2`, runs the group `hb1` prefers; its resource
agents are answered by the test. tests/test_interop_resources.py runs the real Heartbeat.
"""

from __future__ import annotations

from collections.abc import Callable

from test_engine import UDP, engine, keys

from hbd.core import resources as rs
from hbd.core.model import AgentKind, Resource, ResourceGroup
from hbd.core.node import Node, NodeSettings
from hbd.core.wire import Dropped
from hbd.core.wire import ha_control as ctl
from hbd.core.wire.ha_message import HaMessage
from hbd.core.wire.heartbeat import decode_frame, encode_netstring

PEER, UUID = "hb1", bytes(range(0x10, 0x20))
GROUP = ResourceGroup(
    PEER, (Resource("svc", (), AgentKind.RESOURCE_D, "/bin/true", "haresources:1"),), "hr:1"
)


class Peer:
    """The scripted Heartbeat node: one netstring frame per message, on the UDP path."""

    def __init__(self, node: Node, generation: int) -> None:
        self.node, self.generation, self.seq = node, generation, 0

    def send(self, build: Callable[[int, int], HaMessage], now: float) -> None:
        """Sign and deliver the message `build(seq, ts)` makes."""
        self.seq += 1
        msg = build(self.seq, int(now))
        self.node.receive_frame(UDP, encode_netstring(msg, keys().active), now, "10.9.0.1")

    def status(self, now: float) -> None:
        self.send(
            lambda seq, ts: ctl.status_message(
                PEER, UUID, seq, self.generation, "active", 8000, ts, watchdog_ms=None
            ),
            now,
        )

    def message(self, mtype: str, now: float, **fields: str) -> None:
        self.send(
            lambda seq, ts: ctl.cluster_message(
                PEER, UUID, seq, self.generation, ts, mtype, tuple(fields.items())
            ),
            now,
        )


def sent_resource_messages(node: Node, now: float) -> list[dict[str, str]]:
    out = []
    for _pid, data in node.frames_to_send(now):
        msg = decode_frame(data, keys())
        if not isinstance(msg, Dropped) and msg.get("t") == "resource":
            out.append({f.name: f.value for f in msg if isinstance(f.value, str)})
    return out


def run_agents(node: Node, now: float, finish: bool = True) -> list[rs.RunAgent]:
    """The agent runs the node asked for; answered at once (status: not running, start
    and stop: done) unless `finish` is False for starts."""
    asked = []
    while (action := node.next_action()) is not None:
        if isinstance(action, rs.RunAgent):
            asked.append(action)
    for a in asked:
        if a.op == "start" and not finish:
            continue
        rc = rs.OCF_NOT_RUNNING if a.op in ("status", "monitor") else 0
        node.agent_done(a.group, a.index, a.op, rc, "", now)
    return asked


def test_a_returning_heartbeat_peer_hears_of_a_takeover_still_starting() -> None:
    """Regression (CI, test_interop_resources): hb1 lost power, hb2 took its group over,
    and hb1 came back while the start was still running. hb2 told it "none, stable", so
    hb1 started the group too (62 ms on both). What hb2 says it holds now includes every
    group that may run there, a start under way too."""
    settings = NodeSettings(engine=engine(node="hb2").settings, groups=(GROUP,))
    now = 100.0
    node = Node(settings, now)
    run_agents(node, now)  # the probe: not running
    peer = Peer(node, generation=0x2A)
    for _ in range(8):
        now += 1.0
        peer.status(now)
        node.handle_timer(now)
    peer.message("resource", now, rsc_hold="all", rtype="full", isstable="1")
    node.handle_timer(now)
    run_agents(node, now)
    assert node.hbres is not None and node.hbres.peer_holds.wire == "all"
    # hb1 loses power: silent past its deadtime; nothing of it answers a probe
    while not any(a.op == "start" for a in run_agents(node, now, finish=False)):
        now += 0.5
        node.handle_timer(now)
        node.frames_to_send(now)
        assert now < 200.0, "hb2 never took the group over"
    # the start is under way when hb1 comes back, a new incarnation
    peer = Peer(node, generation=0x2B)
    node.frames_to_send(now)
    for _ in range(3):
        now += 0.5
        peer.status(now)
        node.handle_timer(now)
        said = sent_resource_messages(node, now)
        if said:
            break
    assert said, "hb2 said nothing of what it holds"
    assert said[0]["rsc_hold"] == "foreign", said  # hb1's group, as hb2 sees it
