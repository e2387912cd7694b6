"""A hypothesis state machine attacks a live two-node cluster without the key (issue 15).

The attacker records every frame either node sends (and may lose some of alpha's, so
that beta asks for them again with NS_rexmit, recorded too), and may replay any of them on any path,
in any number, at any time; it may forge frames signed with crc (a leftover `1 crc` line
beside the real key) claiming any generation; and either node may restart (the receiver
with what it saved of its peer, `remembered_generations`). Every path works throughout.

Invariants, checked after every step:
- a live peer with a working path is never declared dead: alpha never reports NodeDead
  or NodeLeft for beta while beta has been running (and heard) for a whole deadtime;
- frames sent per frame received stay bounded: what alpha sends grows with time (its
  heartbeats, acks, probes, a bounded rexmit budget), never with what the attacker sends.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from hbd.core.auth import AuthEntry, AuthKeys, AuthMethod
from hbd.core.engine import Engine, EngineSettings, PathKind
from hbd.core.events import NodeDead, NodeLeft
from hbd.core.model import WireFormat
from hbd.core.wire import ha_control as ctl
from hbd.core.wire import heartbeat as hb
from hbd.core.wire.native import cluster_id

PATHS = (("bcast:eth0", PathKind.DATAGRAM), ("bcast:eth1", PathKind.DATAGRAM))
PATH_IDS = [p for p, _ in PATHS]
NODES = ("alpha", "beta")
CRC = AuthEntry(1, AuthMethod.CRC, b"")
KEY = {
    WireFormat.HBD: AuthEntry(2, AuthMethod.SHA256, b"the-real-key"),
    WireFormat.HEARTBEAT: AuthEntry(2, AuthMethod.SHA1, b"the-real-key"),
}
KEEPALIVE, DEADTIME = 0.5, 3.0


def make(node: str, wire: WireFormat, generation: int, now: float, **extra: object) -> Engine:
    key = KEY[wire]
    return Engine(
        EngineSettings(
            node=node,
            uuid=node.encode().ljust(16, b"\0"),
            generation=generation,
            nodes=NODES,
            paths=PATHS,
            auth=AuthKeys(key, {1: CRC, 2: key}),
            keepalive=KEEPALIVE,
            deadtime=DEADTIME,
            warntime=2.0,
            initdead=6.0,
            wire=wire,
            cluster_id=cluster_id(NODES, 694),
            **extra,  # type: ignore[arg-type]
        ),
        now,
    )


class Attacker(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.recorded: list[tuple[str, bytes]] = []
        self.sent_by_alpha = 0
        self.alpha_started = 0.0
        self.beta_started = 0.0
        self.violations: list[str] = []
        self.losing = 0  # steps whose frames from alpha to beta are lost

    @initialize(wire=st.sampled_from(list(WireFormat)))
    def start(self, wire: WireFormat) -> None:
        self.wire = wire
        self.alpha = make("alpha", wire, 10, 0.0)
        self.beta = make("beta", wire, 20, 0.0)
        self._advance(4.0)
        self.losing = 2  # a loss early on: with wire heartbeat, an NS_rexmit is recorded
        self._advance(1.5)

    def _deliver(self, src: Engine, dst: Engine) -> None:
        for path, data in src.frames_to_send(self.now):
            if src is self.alpha:
                self.sent_by_alpha += 1
            if len(self.recorded) < 400 or b"NS_rexmit" in data:
                self.recorded.append((path, data))
            if src is self.alpha and self.losing > 0:
                continue  # lost on the way: beta asks for it again (NS_rexmit)
            dst.receive_frame(path, data, self.now + 0.001, "10.0.0.2")
        if src is self.alpha:
            self.losing = max(0, self.losing - 1)

    def _collect(self) -> None:
        while (event := self.alpha.next_event()) is not None:
            if isinstance(event, NodeDead | NodeLeft) and event.node == "beta":
                live_since = max(self.beta_started, self.alpha_started)
                if self.now - live_since > DEADTIME + KEEPALIVE:
                    self.violations.append(f"{event} at {self.now:.2f}")

    def _advance(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + 0.25)
            for x in (self.alpha, self.beta):
                x.handle_timer(self.now)
            self._deliver(self.alpha, self.beta)
            self._deliver(self.beta, self.alpha)
            self._collect()

    @rule(seconds=st.floats(0.25, 5.0))
    def time_passes(self, seconds: float) -> None:
        self._advance(seconds)

    @rule(
        picks=st.lists(st.integers(0, 10_000), min_size=1, max_size=40),
        path=st.sampled_from(PATH_IDS),
        copies=st.integers(1, 50),
    )
    def replay(self, picks: list[int], path: str, copies: int) -> None:
        if not self.recorded:
            return
        for pick in picks:
            _, data = self.recorded[pick % len(self.recorded)]
            for _ in range(copies):
                self.alpha.receive_frame(path, data, self.now, "10.0.0.66")
        self._deliver(self.alpha, self.beta)
        self._collect()

    @rule(pick=st.integers(0, 10_000), copies=st.integers(1, 300))
    def replay_a_rexmit_request(self, pick: int, copies: int) -> None:
        requests = [r for r in self.recorded if b"NS_rexmit" in r[1]]
        if requests:
            self.replay_copies(requests[pick % len(requests)], copies)

    def replay_copies(self, frame: tuple[str, bytes], copies: int) -> None:
        path, data = frame
        for i in range(copies):
            self.alpha.receive_frame(path, data, self.now + i * 0.001, "10.0.0.66")
            self._deliver(self.alpha, self.beta)
        self._collect()

    @rule(
        jump=st.integers(-5, 1000),
        mtype=st.sampled_from(["shutdone", "status"]),
        path=st.sampled_from(PATH_IDS),
    )
    def forge_with_crc(self, jump: int, mtype: str, path: str) -> None:
        generation = max(0, self.beta.generation + jump)
        uuid = b"beta".ljust(16, b"\0")
        if mtype == "shutdone":
            msg = ctl.shutdone_message("beta", uuid, 1, generation, 0x6000_0000)
        else:
            msg = ctl.status_message("beta", uuid, 1, generation, "active", 3000, 0x6000_0000)
        for data in (hb.encode_netstring(msg, CRC), hb.encode_classic(msg, CRC)):
            self.alpha.receive_frame(path, data, self.now, "10.0.0.66")
        self._deliver(self.alpha, self.beta)
        self._collect()

    @rule(steps=st.integers(1, 3))
    def lose_alphas_frames(self, steps: int) -> None:
        self.losing = steps
        self._advance(1.0)

    @rule()
    def restart_beta(self) -> None:
        self.beta = make("beta", self.wire, self.beta.generation + 1, self.now)
        self.beta_started = self.now

    @rule()
    def restart_alpha(self) -> None:
        remembered = self.alpha.remembered_generations()
        self.alpha = make(
            "alpha", self.wire, self.alpha.generation + 1, self.now, peer_generations=remembered
        )
        self.alpha_started = self.now

    @invariant()
    def a_live_peer_is_never_declared_dead(self) -> None:
        assert not self.violations, self.violations

    @invariant()
    def frames_sent_stay_bounded_by_time_not_by_the_attack(self) -> None:
        paths = len(PATHS)
        # heartbeats, acks and rexmit requests, probes and their answers, plus one rexmit
        # burst and its refill: all per second, none per frame the attacker sends
        bound = paths * (6 / KEEPALIVE * self.now + 40 + 8 * self.now) + 50
        assert self.sent_by_alpha <= bound, (self.sent_by_alpha, bound)


Attacker.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_an_attacker_without_the_key = Attacker.TestCase
