"""The link-redundancy policy, scenario by scenario, on simulated time.

A small world drives two `Policy` objects: who hears whom, which node sees a ping witness,
which node is on the service network (where a group's address answers probes), resource
starts and stops that take a moment, and watchdogs that reset a node W seconds after it
stopped petting. After every step the world checks the one invariant that matters: no
group ever runs on two nodes at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from hbd.core.advert import Advert
from hbd.core.model import AutoFailback
from hbd.core.policy import (
    Acquire,
    Action,
    GroupInfo,
    LocalGroup,
    PeerView,
    Policy,
    Release,
    SelfFence,
)

STEP = 0.05
DEADTIME = 1.0
INITDEAD = 2.0
WATCHDOG = 2.0  # W: ceil(deadtime + 10 ms)
START_TIME = 0.2  # a resource start or stop takes this long

VIP = GroupInfo("IPaddr::10.0.0.5", "alpha", ("10.0.0.5",))
DB = GroupInfo("db", "beta", ())  # no service address


@dataclass
class Node:
    name: str
    policy: Policy
    up: bool = True  # the daemon runs (not crashed, not reset)
    hung: bool = False  # SIGSTOP: alive machine, no decisions, no petting
    running: set[str] = field(default_factory=set)
    busy: dict[str, tuple[float, bool]] = field(default_factory=dict)  # group -> (done, start?)
    last_pet: float = 0.0
    petting: bool = True
    witness: bool = True
    service_net: bool = True
    resets: int = 0
    fails: set[str] = field(default_factory=set)  # groups whose start fails here
    failed: set[str] = field(default_factory=set)
    doubt: set[str] = field(default_factory=set)  # state unknown (e.g. a status timed out)


class World:
    def __init__(
        self,
        groups: tuple[GroupInfo, ...] = (VIP,),
        auto_failback: AutoFailback = AutoFailback.ON,
        witnesses: bool = True,
        watchdog: bool = True,
    ) -> None:
        self.now = 0.0
        self.groups = groups
        self.watchdog = watchdog
        self.auto_failback = auto_failback
        self.witnesses = witnesses
        self.nodes = {n: Node(n, self._policy(n, auto_failback)) for n in ("alpha", "beta")}
        self.hears = {("alpha", "beta"): True, ("beta", "alpha"): True}
        self.last_heard: dict[tuple[str, str], float | None] = dict.fromkeys(self.hears)
        self.adverts: dict[tuple[str, str], Advert] = {}
        self._in_flight: dict[tuple[str, str], Advert] = {}  # adverts lag heartbeats a step
        self.probe_answer: dict[tuple[str, str], float | None] = {}
        self.fences: list[tuple[float, str, str]] = []
        self.dual_active = 0.0

    # -- faults ------------------------------------------------------------------------

    def cut(self, a: str = "alpha", b: str = "beta", both: bool = True) -> None:
        self.hears[(b, a)] = False  # b no longer hears a
        if both:
            self.hears[(a, b)] = False

    def heal(self) -> None:
        for k in self.hears:
            self.hears[k] = True

    def crash(self, n: str) -> None:
        node = self.nodes[n]
        node.up = False
        for key in [k for k in (*self.adverts, *self._in_flight) if k[0] == n]:
            self.adverts.pop(key, None)  # a restarted daemon remembers nothing it heard
            self._in_flight.pop(key, None)
        node.running.clear()  # a power loss: the resources die with the box
        node.busy.clear()

    def restart(self, n: str) -> None:
        """The node comes back with a fresh daemon: a new policy that remembers nothing."""
        self.nodes[n] = Node(n, self._policy(n, self.auto_failback))

    def _policy(self, n: str, auto_failback: AutoFailback) -> Policy:
        return Policy(
            n,
            ("alpha", "beta"),
            self.groups,
            auto_failback,
            watchdog_armed=self.watchdog,
            has_witnesses=self.witnesses,
            probe_window=DEADTIME,
            now=self.now,
        )

    # -- the world's clock -------------------------------------------------------------

    def run(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end - 1e-9:
            self.now = round(self.now + STEP, 6)
            self._step()

    def _step(self) -> None:
        now = self.now
        for (a, b), ok in self.hears.items():
            if ok and self.nodes[a].up and self.nodes[b].up and not self.nodes[b].hung:
                self.last_heard[(a, b)] = now
                if (a, b) in self._in_flight:
                    self.adverts[(a, b)] = self._in_flight[(a, b)]
                self._in_flight[(a, b)] = self.nodes[b].policy.advert()
            elif not self.nodes[b].up:
                self._in_flight.pop((a, b), None)
                self.adverts.pop((a, b), None)
        for node in self.nodes.values():
            self._finish_operations(node)
            self._watchdog(node)
        for node in self.nodes.values():
            if node.up and not node.hung:
                self._decide(node)
        for g in self.groups:
            holders = [n.name for n in self.nodes.values() if g.name in n.running]
            assert len(holders) <= 1, f"{g.name} runs on {holders} at t={now}"

    def _finish_operations(self, node: Node) -> None:
        for g, (done, start) in list(node.busy.items()):
            if self.now >= done and node.up:
                del node.busy[g]
                node.doubt.discard(g)
                if not start or g in node.fails:
                    node.running.discard(g)
                if start and g in node.fails:
                    node.failed.add(g)
                node.policy.settled(g)

    def _watchdog(self, node: Node) -> None:
        if not self.watchdog or not node.up:
            return
        if node.petting and not node.hung:
            node.last_pet = self.now
        elif self.now - node.last_pet >= WATCHDOG:
            node.resets += 1
            self.crash(node.name)  # the reset: processes killed, addresses gone

    def _decide(self, node: Node) -> None:
        me, now = node.name, self.now
        peer = "beta" if me == "alpha" else "alpha"
        heard = self.last_heard[(me, peer)]
        alive = heard is not None and now - heard <= DEADTIME
        known = heard is not None or now >= INITDEAD
        view = PeerView(peer, alive, known, heard, WATCHDOG if self.watchdog else None, DEADTIME)
        adverts = {peer: self.adverts[(me, peer)]} if alive and (me, peer) in self.adverts else {}
        last_words = (
            {peer: self.adverts[(me, peer)]} if not alive and (me, peer) in self.adverts else {}
        )
        probes = {}
        for g in self.groups:
            if g.addresses and node.service_net:
                other = self.nodes[peer]
                if other.up and other.service_net and g.name in other.running:
                    self.probe_answer[(me, g.name)] = now
            probes[g.name] = self.probe_answer.get((me, g.name))
        local = {
            g.name: LocalGroup(
                g.name in node.running or g.name in node.busy or g.name in node.doubt,
                failed=g.name in node.failed,
                started=g.name in node.running and g.name not in node.busy,
            )
            for g in self.groups
        }
        node.policy.update(
            now,
            peers=(view,),
            adverts=adverts,
            witness_up=node.witness,
            local=local,
            probes=probes,
            last_words=last_words,
        )
        while (action := node.policy.next_action()) is not None:
            if isinstance(action, Acquire):
                node.running.add(action.group)
                node.busy[action.group] = (now + START_TIME, True)
            elif isinstance(action, Release):
                node.busy[action.group] = (now + START_TIME, False)
            elif isinstance(action, SelfFence):
                node.petting = False
                self.fences.append((now, me, action.reason))

    def holder(self, group: GroupInfo = VIP) -> str | None:
        holders = [n.name for n in self.nodes.values() if group.name in n.running]
        return holders[0] if holders else None

    def decisions(self, n: str) -> list[str]:
        return [f"{d.decision}: {d.reason}" for d in self.nodes[n].policy.decisions]


def started() -> World:
    w = World()
    w.run(3)
    assert w.holder() == "alpha"
    return w


def test_at_start_the_preferred_node_takes_its_group_and_the_other_waits() -> None:
    w = started()
    assert "beta" not in [n for n in w.nodes if VIP.name in w.nodes[n].running]
    assert any("acquire" in d for d in w.decisions("alpha"))


def test_no_node_acquires_before_first_contact_or_initdead() -> None:
    w = World()
    w.cut()
    w.run(INITDEAD - 0.1)
    assert w.holder() is None
    assert any("waiting for first contact" in d for d in w.decisions("alpha"))


def test_a_crashed_holder_is_taken_over_after_twice_its_watchdog_plus_slack() -> None:
    w = started()
    w.crash("alpha")
    crash = w.now
    w.run(2 * WATCHDOG + 1.0 - 0.2)
    assert w.holder() is None  # still inside the takeover budget
    assert any("takeover in" in d for d in w.decisions("beta"))
    w.run(1.0)
    assert w.holder() == "beta"
    assert w.now - crash < 2 * WATCHDOG + 1.0 + DEADTIME


def test_a_partition_where_both_see_the_witness_keeps_the_group_where_it_is() -> None:
    w = started()
    w.cut()
    w.run(20)
    assert w.holder() == "alpha"
    assert any("still answers" in d for d in w.decisions("beta"))
    assert w.fences == []


def test_an_isolated_holder_releases_and_fences_and_the_peer_takes_over() -> None:
    w = started()
    w.cut()
    w.nodes["alpha"].witness = False
    w.nodes["alpha"].service_net = False
    w.run(10)
    assert [f[1] for f in w.fences] == ["alpha"]
    assert w.nodes["alpha"].resets == 1
    assert w.holder() == "beta"


def test_an_isolated_standby_never_takes_over() -> None:
    w = started()
    w.cut()
    w.nodes["beta"].witness = False
    w.nodes["beta"].service_net = False
    w.run(10)
    assert w.holder() == "alpha"
    assert any("isolated" in d for d in w.decisions("beta"))


def test_a_hung_holder_stops_petting_is_reset_and_then_taken_over() -> None:
    w = started()
    w.nodes["alpha"].hung = True  # SIGSTOP: its kernel still answers for the address
    w.run(15)
    assert w.nodes["alpha"].resets == 1
    assert w.holder() == "beta"


def test_an_asymmetric_cut_leaves_one_holder() -> None:
    w = started()
    w.cut("alpha", "beta", both=False)  # beta no longer hears alpha; alpha still hears beta
    w.run(15)
    assert w.holder() == "alpha"
    assert any("does not hear us" in d for d in w.decisions("alpha"))


def test_failback_on_waits_for_the_stop_before_the_start() -> None:
    w = started()
    w.crash("alpha")
    w.run(8)
    assert w.holder() == "beta"
    w.restart("alpha")
    w.run(5)
    assert w.holder() == "alpha"
    assert any("release" in d for d in w.decisions("beta"))


def test_failback_off_leaves_the_group_where_it_is() -> None:
    w = World(auto_failback=AutoFailback.OFF)
    w.run(3)
    w.crash("alpha")
    w.run(8)
    w.restart("alpha")
    w.run(5)
    assert w.holder() == "beta"


def test_standby_hands_the_group_over_and_takeover_brings_it_back() -> None:
    w = started()
    w.nodes["alpha"].policy.standby("all", w.now)
    w.run(2)
    assert w.holder() == "beta"
    w.nodes["alpha"].policy.takeover("all", w.now)
    w.run(2)
    assert w.holder() == "alpha"
    assert any("asked to take over" in d for d in w.decisions("beta"))


def test_a_group_without_an_address_moves_to_the_standby_survivor_on_partition() -> None:
    w = World(groups=(VIP, DB))
    w.run(3)
    assert w.holder(DB) == "beta" and w.holder(VIP) == "alpha"
    assert w.nodes["alpha"].policy.survivor() == "alpha"  # it runs no address-less group
    w.cut()
    w.run(10)
    assert [f[1] for f in w.fences] == ["beta"]  # the holder fences...
    assert w.nodes["beta"].resets == 1
    assert (w.holder(VIP), w.holder(DB)) == ("alpha", "alpha")  # ...the survivor takes over


def test_a_crashed_holder_of_a_group_without_an_address_is_replaced() -> None:
    w = World(groups=(DB,))
    w.run(3)
    assert w.holder(DB) == "beta"
    w.crash("beta")
    w.run(2 * WATCHDOG + 3)
    assert w.holder(DB) == "alpha"
    assert w.fences == []


DB1 = GroupInfo("db1", "alpha", ())
DB2 = GroupInfo("db2", "beta", ())


def test_on_partition_the_non_survivor_fences_and_the_survivor_takes_its_groups() -> None:
    w = World(groups=(DB1, DB2))
    w.run(3)
    assert (w.holder(DB1), w.holder(DB2)) == ("alpha", "beta")
    assert w.nodes["beta"].policy.survivor() == "alpha"  # one each: the first name
    w.cut()
    w.run(10)
    assert [f[1] for f in w.fences] == ["beta"]
    assert w.nodes["beta"].resets == 1
    assert (w.holder(DB1), w.holder(DB2)) == ("alpha", "alpha")


def test_without_a_watchdog_a_lost_peer_is_taken_over_after_deadtime_with_a_warning() -> None:
    w = World(watchdog=False)
    w.run(3)
    w.crash("alpha")
    w.run(3)
    assert w.holder() == "beta"
    assert any("no watchdog" in d for d in w.decisions("beta"))


def test_bad_operator_modes_are_refused() -> None:
    w = World()
    with pytest.raises(Exception, match="not a standby mode"):
        w.nodes["alpha"].policy.standby("sideways", 0.0)
    with pytest.raises(Exception, match="takeover needs"):
        w.nodes["alpha"].policy.takeover("off", 0.0)


def test_a_group_that_fails_to_start_goes_to_the_peer() -> None:
    w = World()
    w.nodes["alpha"].fails.add(VIP.name)
    w.run(4)
    assert w.holder() == "beta"
    assert w.nodes["beta"].policy.targets()[VIP.name] == "beta"


def test_with_failback_off_a_returning_node_takes_nothing_back_before_it_speaks() -> None:
    w = World(auto_failback=AutoFailback.OFF)
    w.run(3)
    w.crash("alpha")
    w.run(8)
    assert w.holder() == "beta"
    w.restart("alpha")
    w.run(5)
    assert w.holder() == "beta"
    assert not any("release" in d for d in w.decisions("beta")[-5:])


def test_a_group_in_doubt_on_its_target_is_acquired_again() -> None:
    w = World()
    w.nodes["alpha"].doubt.add(VIP.name)  # its status timed out: may be running
    w.run(4)
    assert w.holder() == "alpha"
    assert w.nodes["alpha"].doubt == set()


def test_agreement_given_before_our_claim_is_not_enough() -> None:
    """Beta's advert says "target alpha, not running" but was made before it saw alpha's
    claim (its views could be about to flip): alpha waits for an answer to its claim."""
    alpha = Policy(
        "alpha",
        ("alpha", "beta"),
        (VIP,),
        AutoFailback.ON,
        watchdog_armed=True,
        has_witnesses=False,
        probe_window=DEADTIME,
        now=0.0,
    )
    beta_view = (PeerView("beta", True, True, 1.0, WATCHDOG, DEADTIME),)
    stale = Advert(alpha.digest, (False,), (0,), hears=0b11, epoch=7, seen=(0, 7))

    def turn(advert: Advert, now: float) -> list[Action]:
        alpha.update(
            now,
            peers=beta_view,
            adverts={"beta": advert},
            witness_up=True,
            local={VIP.name: LocalGroup(False)},
            probes={},
        )
        out = []
        while (action := alpha.next_action()) is not None:
            out.append(action)
        return out

    assert turn(stale, 1.0) == []
    claim = alpha.advert().epoch
    assert any("see our claim" in d.reason for d in alpha.decisions)
    answered = Advert(alpha.digest, (False,), (0,), hears=0b11, epoch=7, seen=(claim, 7))
    assert [type(a) for a in turn(answered, 1.1)] == [Acquire]


def test_a_clean_stop_hands_over_without_waiting_for_the_budget() -> None:
    """The holder gives its groups up and then goes: its last advert said "stopped", so
    the peer need not wait the takeover budget for a node that cannot be running them."""
    w = started()
    w.nodes["alpha"].policy.standby("all", w.now)
    w.run(START_TIME + 0.2)  # released, and the "stopped" advert is out
    w.crash("alpha")  # the daemon exits right after
    stopped = w.now
    while w.holder() != "beta" and w.now - stopped < 3 * WATCHDOG:
        w.run(STEP)
    assert w.holder() == "beta"
    assert w.now - stopped < 1.0  # far inside the 2 x W + 1 s budget
    assert not any("takeover in" in d for d in w.decisions("beta"))
    acquired = [d for d in w.decisions("beta") if d.startswith("acquire")]
    assert acquired and ("every peer agreed" in acquired[-1] or "does not run it" in acquired[-1])
