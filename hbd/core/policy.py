"""The link-redundancy policy: who holds each resource group, and when a node fences itself.

Theory of operation
-------------------
What it decides: for each haresources group, whether THIS node should acquire it, release
it, or leave it; and whether this node must fence itself (stop petting its watchdog).
It never decides alone what another node does: every start is justified by what the peers
said (their adverts, `hbd.core.advert`) or by evidence that a lost peer cannot be serving.

Inputs (`update`, with `now`): the membership view of every peer (alive or not, when last
heard, the watchdog timeout it advertises, how many paths are up), each live peer's latest
advert, whether any ping witness answers, this node's own groups (may any resource be
running? did a start fail?), and for each group with a service address when that address
last answered a probe from here. Operator commands come as `standby(mode)` and
`takeover(mode)`.

The target. From the same inputs every node computes the same target for a group: the first
node, preferred node first, that is alive and does not refuse the group (standby, or a group
that failed to start there); with `auto_failback off` a group stays on the live node already
running it.

Hand-off between live nodes (never two at once): a node releases a group whose target is
another node; it starts a group whose target is itself only when EVERY live peer's latest
advert says "its target is you, and it is not running here". A peer that is running a group
says so until its resource manager reports every resource stopped, so a start can only
follow a completed stop. A peer that has not advertised yet (just started, or a Heartbeat
node) blocks every start.

A lost peer (dead, or alive but no longer hearing us, as its advert says) is the hard case:
from here a crashed peer and a partition look the same. This node takes over a group a lost
peer may be running only when all of these hold:
  1. it is not isolated: when ping witnesses are configured, at least one answers;
  2. the takeover budget has passed since the peer was last heard: twice the watchdog timeout
     it advertised plus one advert interval (sbd's rule, plus the time an asymmetric cut
     takes to become known); with no watchdog on the peer, its deadtime, and a warning that
     safety then rests on the paths alone;
  3. there is evidence the peer is not serving it: for a group with a service address, that
     address has not answered a probe for `probe_window` (a partitioned holder keeps
     answering; a crashed, hung-then-reset or isolated one does not); for a group without
     one, this node is the designated survivor (below) or the operator said `takeover`.
The side that keeps running a group across a partition is the one still serving it, so a
partition never makes two holders.

The designated survivor decides groups that have no service address: while connected, both
nodes compute it from the same adverts: the node running FEWEST such groups (the standby),
ties to the first in name order. A node that loses its peers while running such groups and
is not the survivor releases them and fences itself; the survivor takes them after the
budget. So a crashed holder is replaced, and a partition moves the service once; the price
is that a crashed standby makes the holder give its address-less groups up (a service
address avoids that: the probe rule needs no survivor).

Isolation: a node that has lost every peer and reaches none of its configured ping witnesses
releases everything, fences itself if it was running anything, and never takes over.

Why the budget is safe: a node that must go stops petting at the latest when it declares its
peer lost (deadtime after last hearing it, plus at most one advert interval when the cut is
asymmetric); its watchdog resets it at most W later. The survivor waits 2 W + one advert
interval from when it last heard that node, which is later (deadtime <= W).
"""

from __future__ import annotations

import dataclasses
import enum
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from hbd.core.advert import NO_NODE, Advert, Standby, group_digest
from hbd.core.errors import LocalProtocolError
from hbd.core.model import AutoFailback

ADVERT_SLACK = 1.0  # one advert interval (hbd.core.engine.ADVERT_INTERVAL)
MAX_DECISIONS = 20


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """A group as the policy sees it: its name, preferred node and service addresses."""

    name: str
    preferred: str
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PeerView:
    """One configured peer, from the membership view."""

    name: str
    alive: bool
    known: bool  # heard, or declared dead (initdead passed): False while still in init
    last_heard: float | None
    watchdog: float | None  # the watchdog timeout it advertises, seconds
    deadtime: float  # the deadtime that applies to it


@dataclass(frozen=True, slots=True)
class LocalGroup:
    """This node's own state of a group (from the resource manager)."""

    may_run: bool  # any resource not known stopped
    failed: bool = False  # a start failed here: refuse the group until an operator acts
    started: bool = False  # every resource known running


# -- actions (imperatives) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Acquire:
    group: str
    reason: str


@dataclass(frozen=True, slots=True)
class Release:
    group: str
    reason: str


@dataclass(frozen=True, slots=True)
class SelfFence:
    """Stop petting the watchdog: this node must be reset before its peer takes over."""

    reason: str


Action = Acquire | Release | SelfFence


@dataclass(frozen=True, slots=True)
class Decision:
    """One line of the policy's reasoning, for the log and `hbctl status`."""

    at: float
    decision: str
    reason: str


class Why(enum.Enum):
    """Why a group is not acquired right now (kept to log each reason once)."""

    AGREEMENT = "waiting for the peers to agree"
    BUDGET = "takeover budget"
    SERVICE = "service address still answers"
    SURVIVOR = "not the designated survivor"
    ISOLATED = "isolated"
    FENCED = "fenced"


@dataclass
class _Lost:
    """What is remembered of a peer once it is lost."""

    since: float
    last_heard: float | None
    advert: Advert | None  # its last advert before it was lost


@dataclass
class _State:
    standby: Standby = Standby.NONE
    claim: Standby = Standby.NONE
    claim_id: int = 0
    applied_claims: dict[str, int] = field(default_factory=dict)
    forced: set[str] = field(default_factory=set)  # groups `takeover` forced past the survivor rule


class Policy:
    """Decides acquisitions, releases and self-fencing for one node."""

    def __init__(
        self,
        local: str,
        nodes: tuple[str, ...],
        groups: tuple[GroupInfo, ...],
        auto_failback: AutoFailback,
        *,
        watchdog_armed: bool,
        has_witnesses: bool,
        probe_window: float,
        now: float,
    ) -> None:
        if local not in nodes:
            raise LocalProtocolError(f"local node {local!r} is not in {nodes}")
        self.local = local
        self.nodes = tuple(sorted(nodes))  # indexes in adverts: the same on every node
        self.groups = groups
        self._index = {g.name: i for i, g in enumerate(groups)}
        self.digest = group_digest(tuple(g.name for g in groups))
        self.auto_failback = auto_failback
        self.watchdog_armed = watchdog_armed
        self.has_witnesses = has_witnesses
        self.probe_window = probe_window
        self._state = _State()
        self._peers: dict[str, PeerView] = {}
        self._adverts: dict[str, Advert] = {}
        self._last_advert: dict[str, Advert] = {}  # kept after a peer is lost
        self._lost: dict[str, _Lost] = {}
        self._heard_by: set[str] = set()  # peers whose adverts said they hear us
        self._frozen_survivor: str | None = None  # the survivor when contact was lost
        self._epoch = 0
        self._content: Advert | None = None  # the last published content, epoch aside
        self._published: Advert | None = None
        self._claim_epoch: dict[str, int] = {}  # group -> epoch that first claimed it
        self._local: dict[str, LocalGroup] = {g.name: LocalGroup(False) for g in groups}
        self._probes: dict[str, float | None] = {}
        self._witness_up = True
        self._pending: set[str] = set()  # groups asked to acquire or release, not settled
        self._actions: deque[Action] = deque()
        self.decisions: deque[Decision] = deque(maxlen=MAX_DECISIONS)
        self._said: dict[tuple[str, Why], float] = {}
        self.fenced: str | None = None
        self._timer: float | None = None

    # -- inputs ---------------------------------------------------------------------

    def standby(self, mode: str, now: float) -> None:
        """`hbctl standby all|local|foreign|off`: refuse those groups from now on."""
        self._state.standby = Standby.parse(mode)
        self._decide_line(now, f"standby {mode}", "operator request")

    def takeover(self, mode: str, now: float) -> None:
        """`hbctl takeover all|local|foreign|failback`: ask the peers to give these up.

        Live peers apply the claim once (it becomes their standby); groups a lost peer may
        run are taken past the survivor rule (the operator asserts the peer is down), still
        only after the takeover budget."""
        claim = Standby.LOCAL if mode == "failback" else Standby.parse(mode)
        if claim is Standby.NONE:
            raise LocalProtocolError("takeover needs all, local, foreign or failback")
        self._state.standby = Standby.NONE
        self._state.claim = claim
        self._state.claim_id = (self._state.claim_id + 1) & 0xFFFF
        for g in self.groups:
            if claim.covers(g.preferred == self.local):
                self._state.forced.add(g.name)
                if self._local[g.name].failed:
                    self._local[g.name] = LocalGroup(self._local[g.name].may_run, False)
        self._decide_line(now, f"takeover {mode}", "operator request")

    def update(
        self,
        now: float,
        *,
        peers: tuple[PeerView, ...],
        adverts: Mapping[str, Advert],
        witness_up: bool,
        local: Mapping[str, LocalGroup],
        probes: Mapping[str, float | None],
        last_words: Mapping[str, Advert] | None = None,
    ) -> None:
        """Take in the current view and decide; actions come out of `next_action()`.

        `last_words` are dead peers' final adverts (a node stopping cleanly says "stopped"
        and goodbye in one breath): what a lost peer last said it ran."""
        self._peers = {p.name: p for p in peers}
        for name, advert in (last_words or {}).items():
            if advert.digest == self.digest:
                self._last_advert[name] = advert
                lost = self._lost.get(name)
                if lost is not None:
                    lost.advert = advert
        self._adverts = {n: a for n, a in adverts.items() if a.digest == self.digest}
        for name, advert in adverts.items():
            if advert.digest != self.digest:
                self._say(now, name, Why.AGREEMENT, f"{name} lists different resource groups")
        self._last_advert.update(self._adverts)
        self._witness_up = witness_up
        self._local.update(local)
        self._probes = dict(probes)
        self._apply_claims(now)
        self._track_lost(now)
        self._decide(now)

    # -- outputs --------------------------------------------------------------------

    def next_action(self) -> Action | None:
        return self._actions.popleft() if self._actions else None

    def get_timer(self) -> float | None:
        """When a waiting takeover becomes possible (a budget or probe window ends)."""
        return self._timer

    def advert(self) -> Advert:
        """This node's advert now (its epoch goes up whenever its content changed)."""
        self._publish()
        assert self._published is not None
        return self._published

    def _publish(self) -> None:
        me = self.nodes.index(self.local)
        hears = sum(1 << self.nodes.index(p.name) for p in self._peers.values() if p.alive)
        targets = tuple(self._index_of(self._target(g)) for g in self.groups)
        content = Advert(
            digest=self.digest,
            running=tuple(self._local[g.name].may_run for g in self.groups),
            targets=targets,
            hears=hears | 1 << me,
            failed=tuple(self._local[g.name].failed for g in self.groups),
            standby=self._state.standby,
            claim=self._state.claim,
            claim_id=self._state.claim_id,
            started=tuple(self._local[g.name].started for g in self.groups),
        )
        old = self._content
        if content != old:
            self._epoch = (self._epoch + 1) & 0xFFFF
            self._content = content
            for i, g in enumerate(self.groups):
                claimed_before = old is not None and old.targets[i] == me
                if targets[i] == me and not claimed_before:
                    self._claim_epoch[g.name] = self._epoch  # first said "mine" in this one
                elif targets[i] != me:
                    self._claim_epoch.pop(g.name, None)
        seen = tuple(self._adverts[n].epoch if n in self._adverts else 0 for n in self.nodes)
        self._published = dataclasses.replace(content, epoch=self._epoch, seen=seen)

    def peer_adverts(self) -> dict[str, Advert]:
        """The live peers' latest adverts (those with our group list)."""
        return dict(self._adverts)

    def targets(self) -> dict[str, str | None]:
        return {g.name: self._target(g) for g in self.groups}

    def survivor(self) -> str:
        """The designated survivor: agreed while connected, frozen once a peer is lost."""
        return self._frozen_survivor or self._survivor()

    # -- the decision ---------------------------------------------------------------

    def _decide(self, now: float) -> None:
        self._timer = None
        self._publish()
        isolated = self._isolated()
        if isolated:
            self._say(
                now, "*", Why.ISOLATED, "isolated: every peer lost and no ping witness answers"
            )
        running_any = any(lg.may_run for lg in self._local.values())
        if isolated and running_any:
            self._fence(now, "isolated: every peer lost and no ping witness answers")
        elif self._lost and running_any and not self._is_survivor():
            owned = [g.name for g in self.groups if not g.addresses and self._local[g.name].may_run]
            if owned:
                self._fence(
                    now,
                    f"lost every path to {', '.join(sorted(self._lost))} while running "
                    f"{', '.join(owned)} without the designated survivor's role "
                    f"(survivor: {self.survivor()})",
                )
        for g in self.groups:
            mine = self._local[g.name]
            target = self._target(g)
            if self.fenced is not None or isolated:
                if mine.may_run:
                    self._release(
                        g, now, "this node is fencing itself" if self.fenced else "isolated"
                    )
                continue
            if mine.may_run and target != self.local:
                self._release(g, now, f"its target is {target or 'no node'}")
            elif target == self.local and not mine.started:
                # not running, or in doubt (a status that timed out, a half-started group
                # after a crash): acquiring asks each resource's status before starting it,
                # so nothing runs twice
                self._maybe_acquire(g, now)
            else:
                self._pending.discard(g.name)  # settled either way: may ask again later

    def _maybe_acquire(self, g: GroupInfo, now: float) -> None:
        me = self._index_of(self.local)
        waiting = [n for n, p in self._peers.items() if not p.known]
        if waiting:
            self._say(
                now, g.name, Why.AGREEMENT, f"waiting for first contact with {', '.join(waiting)}"
            )
            return
        for name, peer in self._peers.items():
            if not peer.alive or name in self._lost:
                continue
            advert = self._adverts.get(name)
            if advert is None:
                self._say(now, g.name, Why.AGREEMENT, f"no advert from {name} yet")
                return
            i = self._index[g.name]
            if advert.running[i] or advert.targets[i] != me:
                self._say(now, g.name, Why.AGREEMENT, f"{name} has not handed it over yet")
                return
            claim = self._claim_epoch.get(g.name)
            saw = advert.saw(me)
            if claim is None or saw is None or (saw - claim) & 0xFFFF >= 0x8000:
                # its "target: you" predates our claim: wait for its answer to the claim
                self._say(now, g.name, Why.AGREEMENT, f"waiting for {name} to see our claim")
                return
        for name, lost in self._lost.items():
            if not self._may_run_on(name, g, lost):
                continue
            lost_peer = self._peers.get(name)
            ready_at = self._budget_end(lost_peer, lost)
            if now < ready_at:
                self._wait(ready_at)
                self._say(
                    now,
                    g.name,
                    Why.BUDGET,
                    f"{name} may still run it: takeover in {ready_at - now:.1f} s "
                    f"({self._budget_text(lost_peer)})",
                )
                return
            if g.addresses:
                answered = self._probes.get(g.name)
                if answered is not None and now - answered < self.probe_window:
                    self._wait(answered + self.probe_window)
                    self._say(
                        now,
                        g.name,
                        Why.SERVICE,
                        f"{', '.join(g.addresses)} still answers: {name} is partitioned, "
                        "not dead; it keeps the group",
                    )
                    return
            elif g.name not in self._state.forced and not self._is_survivor():
                self._say(
                    now,
                    g.name,
                    Why.SURVIVOR,
                    f"cannot tell a crashed {name} from a partition (the group has no "
                    f"service address) and {self.survivor()} is the designated survivor; "
                    "'hbctl takeover' forces it",
                )
                return
        if g.name not in self._pending:
            self._pending.add(g.name)
            reason = self._acquire_reason(g)
            self._actions.append(Acquire(g.name, reason))
            self._decide_line(now, f"acquire {g.name}", reason)

    def _release(self, g: GroupInfo, now: float, reason: str) -> None:
        if g.name in self._pending:
            return
        self._pending.add(g.name)
        self._actions.append(Release(g.name, reason))
        self._decide_line(now, f"release {g.name}", reason)

    def _fence(self, now: float, reason: str) -> None:
        if self.fenced is not None:
            return
        self.fenced = reason
        if self.watchdog_armed:
            self._actions.append(SelfFence(reason))
            self._decide_line(now, "self-fence", reason)
        else:
            self._decide_line(
                now,
                "release everything (no watchdog to fence with)",
                reason + "; with no watchdog armed, safety rests on the release completing",
            )

    # -- the view ---------------------------------------------------------------------

    def _target(self, g: GroupInfo) -> str | None:
        order = [g.preferred, *(n for n in self.nodes if n != g.preferred)]
        candidates = [n for n in order if self._reachable(n) and not self._refuses(n, g)]
        if not candidates:
            return None
        if self.auto_failback is AutoFailback.OFF:
            for n in candidates:
                if self._running_on(n, g):
                    return n
        return candidates[0]

    def _reachable(self, node: str) -> bool:
        if node == self.local:
            return self.fenced is None
        peer = self._peers.get(node)
        return peer is not None and peer.alive and node not in self._lost

    def _refuses(self, node: str, g: GroupInfo) -> bool:
        if node == self.local:
            return self._state.standby.covers(g.preferred == node) or self._local[g.name].failed
        advert = self._adverts.get(node)
        if advert is None:
            return False
        failed = advert.failed_group(self._index[g.name])
        return failed or advert.standby.covers(g.preferred == node)

    def _running_on(self, node: str, g: GroupInfo) -> bool:
        """Does `node` run `g`, for stickiness (auto_failback off)? Only a group known
        started counts (not one still being probed), and a peer only by what it advertised:
        one that has not spoken yet holds nothing (and no start happens before it spoke)."""
        if node == self.local:
            return self._local[g.name].started
        advert = self._adverts.get(node)
        return advert is not None and advert.started_group(self._index[g.name])

    def _may_run_on(self, node: str, g: GroupInfo, lost: _Lost) -> bool:
        """Could the lost `node` be running `g`? Yes unless its last advert said it was not
        running it and did not mean to (a node starts a group only after advertising that
        it is the target)."""
        advert = lost.advert
        if advert is None:
            return True
        i = self._index[g.name]
        return advert.running[i] or advert.targets[i] == self._index_of(node)

    def _track_lost(self, now: float) -> None:
        me = self._index_of(self.local)
        for name, peer in self._peers.items():
            advert = self._adverts.get(name)
            if advert is not None and advert.hears_node(me):
                self._heard_by.add(name)
            # deaf: it heard us before and does not any more (an asymmetric cut); a peer
            # that has not heard us yet (both just started) is not deaf
            deaf = (
                peer.alive
                and advert is not None
                and not advert.hears_node(me)
                and name in self._heard_by
            )
            if not peer.alive:
                self._heard_by.discard(name)
            gone = (not peer.alive and peer.known) or deaf
            if gone and name not in self._lost:
                if not self._lost:
                    self._frozen_survivor = self._survivor()
                self._lost[name] = _Lost(now, peer.last_heard, self._last_advert.get(name))
                why = "does not hear us any more" if deaf else "is dead"
                self._decide_line(now, f"peer {name} lost", why)
            elif peer.alive and not deaf and name in self._lost:
                del self._lost[name]
                if not self._lost:
                    self._frozen_survivor = None
                self._decide_line(now, f"peer {name} back", "it hears us and we hear it")
                if not self._lost and self.fenced is not None and not self.watchdog_armed:
                    self.fenced = None  # nothing reset us; with the peers back we may serve
                    self._decide_line(now, "serve again", "every lost peer is back")

    def _isolated(self) -> bool:
        lost_all = bool(self._peers) and all(n in self._lost for n in self._peers)
        return lost_all and self.has_witnesses and not self._witness_up

    def _survivor(self) -> str:
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n] = sum(1 for g in self.groups if not g.addresses and self._last_running(n, g))
        return min(self.nodes, key=lambda n: (counts[n], self.nodes.index(n)))

    def _last_running(self, node: str, g: GroupInfo) -> bool:
        if node == self.local:
            return self._local[g.name].may_run
        advert = self._last_advert.get(node)
        return advert is not None and advert.running[self._index[g.name]]

    def _is_survivor(self) -> bool:
        return self.survivor() == self.local

    def _budget_end(self, peer: PeerView | None, lost: _Lost) -> float:
        last = lost.last_heard if lost.last_heard is not None else lost.since
        if peer is not None and peer.watchdog:
            return last + 2 * peer.watchdog + ADVERT_SLACK
        deadtime = peer.deadtime if peer is not None else 0.0
        return max(lost.since, last + deadtime)

    @staticmethod
    def _budget_text(peer: PeerView | None) -> str:
        if peer is not None and peer.watchdog:
            return f"2 x its watchdog {peer.watchdog:g} s + {ADVERT_SLACK:g} s"
        return "it has no watchdog: safety rests on the paths alone"

    def _acquire_reason(self, g: GroupInfo) -> str:
        if not self._lost:
            return "its target is this node and every peer agreed"
        risky = sorted(n for n, lost in self._lost.items() if self._may_run_on(n, g, lost))
        if not risky:
            return (
                f"{', '.join(sorted(self._lost))} said it does not run it "
                "(its last advert before it went)"
            )
        text = f"taking over from {', '.join(risky)}"
        unfenced = [n for n in risky if not self._peers.get(n) or not self._peers[n].watchdog]
        if unfenced:
            text += f" ({', '.join(unfenced)}: no watchdog, safety rests on the paths alone)"
        return text

    def _apply_claims(self, now: float) -> None:
        for name, advert in self._adverts.items():
            if advert.claim is Standby.NONE:
                continue
            if self._state.applied_claims.get(name) == advert.claim_id:
                continue
            self._state.applied_claims[name] = advert.claim_id
            # The claimant's LOCAL groups are our FOREIGN ones and the other way round.
            mine = {
                Standby.LOCAL: Standby.FOREIGN,
                Standby.FOREIGN: Standby.LOCAL,
                Standby.ALL: Standby.ALL,
            }[advert.claim]
            self._state.standby = mine
            self._decide_line(now, f"standby {mine.name.lower()}", f"{name} asked to take over")

    def _index_of(self, node: str | None) -> int:
        return NO_NODE if node is None else self.nodes.index(node)

    def _wait(self, at: float) -> None:
        self._timer = at if self._timer is None else min(self._timer, at)

    def _decide_line(self, now: float, decision: str, reason: str) -> None:
        self.decisions.append(Decision(now, decision, reason))

    def _say(self, now: float, key: str, why: Why, reason: str) -> None:
        """A waiting reason, recorded once per second at most (the countdown)."""
        last = self._said.get((key, why))
        if last is None or now - last >= 1.0:
            self._said[(key, why)] = now
            self._decide_line(now, f"wait {key}", reason)

    def fenced_elsewhere(self, now: float, reason: str) -> None:
        """The node is fencing itself for a reason found outside the policy (a stalled loop,
        a resource that cannot be stopped): release everything, take nothing."""
        if self.fenced is None:
            self.fenced = reason
            self._decide_line(now, "self-fence", reason)

    def settled(self, group: str) -> None:
        """The resource manager finished what was asked for `group` (started, stopped or
        failed): the policy may ask again."""
        self._pending.discard(group)
