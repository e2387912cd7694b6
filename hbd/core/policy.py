"""The link-redundancy policy: who holds each resource group, and when a node must go.

Theory of operation
-------------------
docs/policy.md opens with the table of situations and required outcomes this module
implements, and holds the proof of the takeover budget; read it first. In short:

What it decides, for ONE node: for each haresources group, acquire it, release it, or
leave it; and whether this node must go (release everything and stop petting its
watchdog, so it is reset before a peer takes over).

Inputs (`update`, `now` always a parameter): each peer's view from membership and the
acknowledgements (`PeerView`: alive, left, last heard, advertised watchdog, whether the
peer may already count this node dead -- "unheard" -- and whether its frames say it does
not hear this node -- "deaf"), the peers' adverts (`hbd.core.advert`), whether this node
reaches a ping witness (`Isolation`), this node's own groups (`LocalGroup`), and when each
probe answered: a peer's own addresses, and each group's service addresses. Operator
commands come as `standby(mode)` and `takeover(mode)`.

1. Targets. From the same adverts every node computes the same target for a group: an
   active takeover claim's claimant, else the first node, preferred first, that is
   reachable and does not refuse it (standby, or a start that failed there); with
   `auto_failback off` a group stays where it is started.
2. Hand-off between nodes that hear each other (never two at once): a node releases a
   group whose target is another (a peer heard again whose last advert refused the
   group: once its new advert confirms it takes it, not on a guess that would interrupt
   the service for nothing); it
   starts one whose target is itself only when every
   live peer's advert says "your target, not running here", given after it saw our claim
   (advert epochs). A stop must complete before the peer says "not running".
3. A holder never gives a group up because it lost its peer. It goes (releases
   everything and fences) only when a peer may already count it dead ("unheard": no
   acknowledgement of our frames for our deadtime) AND either that peer is alive and deaf
   to us (a one-way cut: it will take over) or this node reaches no ping witness
   (isolated: none answers now and one did since start, or none ever did but one answers
   a peer, as its advert's `witness` flag said -- `Isolation`). So the death of a standby
   never interrupts a holder.
4. A node takes over a group a lost (silent) peer may be running only when: it is not
   cut off (reaches a ping witness, or has none to ask), the takeover budget has passed
   since it last heard the peer (from its own start if it never did), and nothing of the
   peer answers a probe: neither the peer's own addresses nor the group's service
   addresses, for `probe_window`. A partitioned peer answers, so nothing moves; a dead,
   reset or isolated one does not.
5. Budget = max(deadtime, deadping) + keepalive + W + margin, W the peer's advertised
   watchdog timeout (the worst case, `peer_watchdog_timeout`, for a peer never heard since
   start). By then a peer that must go has been reset: docs/policy.md has the proof. A
   peer with no watchdog cannot be reset: max(deadtime, deadping), Heartbeat's own rule,
   and a warning that safety rests on the paths.
6. What two nodes alone cannot tell apart -- every path cut, both reach a ping node,
   nothing of the peer answers -- puts a group on both (the residual case,
   docs/policy.md); a third vote is the only cure.
7. With an arbiter (corosync-qnetd, `Arbiter`), its vote replaces rules 3 and 4's
   evidence of isolation: a node whose peer may count it dead keeps its groups only
   while qnetd's ACK covers a membership without that peer, and goes once the decision
   time D has passed since it became unheard without one (at once on a NACK); a node
   takes a silent peer's group only with that ACK, held for the peer's loss-detection
   bound (2 heartbeats + its watchdog + margin), and once budget + D has passed since
   the peer's last sign of life. While the peers hear each other the vote changes
   nothing. docs/policy.md, "With an arbiter", has the bound.
8. Which rules a partition follows is fixed when it begins, per peer, from what the two
   nodes knew of each other's qnetd connection (the advert's `arbiter` flag): if neither
   this node's connection, as the peer last acknowledged it, nor the peer's, as its last
   advert said, was up, qnetd was out of the picture for both and the partition is
   handled as without an arbiter (rules 3 and 4; the taker waits D more, and a NACK
   still stops it); otherwise by rule 7, where an ACK counts only while this node's
   connection has been up without a break since an advert the peer acknowledged (so
   a counted ACK implies the peer follows rule 7 too). A peer never heard since start,
   or with no arbiter configured, is taken over from only as without an arbiter, and
   (never heard) only with an ACK as well. docs/policy.md, "With an arbiter".
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

MAX_DECISIONS = 40
TAKEOVER_MARGIN = 0.25  # seconds: latency both ways, loop and watchdog timer slack
ANSWER_SLACK = 0.1  # seconds beyond two keepalives for a probe answer to count as "now"


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """A group as the policy sees it: its name, preferred node and service addresses."""

    name: str
    preferred: str
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PeerView:
    """One configured peer, from membership and its acknowledgements of our frames."""

    name: str
    alive: bool  # heard within its deadtime
    known: bool  # heard, or initdead passed (False: still waiting for first contact)
    last_heard: float | None  # None: not heard since this node started
    watchdog: float | None  # advertised watchdog timeout (None: no watchdog, or never heard)
    deadtime: float  # the deadtime that applies to it
    generation: int | None = None
    left: bool = False  # said goodbye: a clean stop, not a partition
    # it may already count this node dead (the caller looks again when this flips: the
    # moment moves with every acknowledgement, so the caller owns that deadline)
    unheard: bool = False
    deaf: bool = False  # alive, and its frames say it has not heard us for our deadtime
    answered: float | None = None  # when a probe of its own addresses last answered


class Isolation(enum.Enum):
    """Whether this node can still reach the world outside the cluster."""

    REACHES = "a ping node answers"
    ISOLATED = "no ping node answers"
    NO_WITNESSES = "no ping nodes are configured: isolation cannot be told"
    UNPROVEN = (
        "no ping node has answered since start although a peer was heard over the network: "
        "a configuration problem, not evidence of isolation"
    )
    UNKNOWN = "no ping node has answered since start: this node may be cut off"
    PEER_REACHES = (
        "no ping node has answered since start, though one answers a peer: this node's "
        "way to it is broken"
    )

    @property
    def cut_off(self) -> bool:
        return self in (Isolation.ISOLATED, Isolation.UNKNOWN, Isolation.PEER_REACHES)


@dataclass(frozen=True, slots=True)
class Arbiter:
    """The arbiter's timing, from its heartbeat interval (hbd.core.qnetd.client)."""

    decision: float  # D: how long qnetd may take to decide after a membership change
    loss: float  # how long a node may take to notice it lost its connection (and vote)
    nack_first: bool = True  # ffsplit: no ACK goes out before every NACK was acknowledged


@dataclass(frozen=True, slots=True)
class Vote:
    """What qnetd says now: `ack` True (the vote) or False (NACK) for `members`, held
    since `since`; `ack` None: no vote (not connected, or not decided)."""

    connected: bool
    ack: bool | None = None
    members: frozenset[str] = frozenset()
    since: float | None = None
    reason: str = "not connected"
    lost_at: float | None = None  # when the connection was last found lost

    def gives(self, peer: str) -> bool:
        """The vote is this node's, for a membership without `peer`."""
        return self.ack is True and peer not in self.members

    def refuses(self, peer: str) -> bool:
        """qnetd gave the vote to the other side of a membership without `peer`."""
        return self.ack is False and peer not in self.members


NO_VOTE = Vote(False)


@dataclass(frozen=True, slots=True)
class LocalGroup:
    """This node's own state of a group (from the resource manager)."""

    may_run: bool  # any resource not known stopped
    failed: bool = False  # a start failed here: refuse the group until an operator acts
    started: bool = False  # every resource known running


@dataclass(frozen=True, slots=True)
class HeartbeatView:
    """A live Heartbeat 3.0.6 peer: it hands groups over by its own protocol, not by
    adverts, so rules 1 and 2 give way to Heartbeat's (`hbd.core.hbresources`): which of
    this node's groups -- `local` (preferred here) and `foreign` -- may run now."""

    peer: str
    local: bool
    foreign: bool
    reason: str = "Heartbeat's resource protocol"


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """The policy's configuration, as plain values."""

    local: str
    nodes: tuple[str, ...]
    groups: tuple[GroupInfo, ...]
    auto_failback: AutoFailback
    watchdog_armed: bool
    keepalive: float
    deadping: float
    probe_window: float
    peer_watchdog: float | None  # assumed for a peer never heard since start (None: none)
    margin: float = TAKEOVER_MARGIN
    arbiter: Arbiter | None = None  # qnetd configured: its vote decides a partition


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
    """This node must go: release everything and stop petting the watchdog, so it is reset
    before its peer takes over (without a watchdog: release everything, and hope)."""

    reason: str


Action = Acquire | Release | SelfFence


@dataclass(frozen=True, slots=True)
class Decision:
    """One line of the policy's reasoning, for the log and `hbctl status`."""

    at: float
    decision: str
    reason: str


class Why(enum.Enum):
    """Why a group is not acquired right now (kept to say each reason once a second)."""

    AGREEMENT = "waiting for the peers to agree"
    BUDGET = "takeover budget"
    ANSWERS = "the peer still answers"
    CUT_OFF = "cut off"
    SUSPENDED = "settling after a stall"
    VOTE = "no vote from qnetd"


@dataclass
class _Lost:
    """What is remembered of a silent peer."""

    since: float
    last_heard: float | None
    advert: Advert | None  # its last advert before it went silent
    # groups this node ran or targeted since: the silent peer, deaf to us as far as we know,
    # may take any of them over from us as we would from it (rule 4 from its side)
    ours: set[str] = field(default_factory=set)


class Rules(enum.Enum):
    """Which partition rules apply to one lost or unheard peer (rule 8)."""

    VOTE = "qnetd's vote (rule 7)"
    WITHOUT = "as without an arbiter: qnetd was unreachable from both nodes"
    FIRST = "as without an arbiter, with qnetd's ACK: the peer was never heard since start"
    PEER_HAS_NONE = "as without an arbiter: the peer has no qnetd configured"


@dataclass
class _Episode:
    """A partition from one peer, as it began (rule 8)."""

    rules: Rules
    up_epoch: int | None  # our qnetd connection's start, if the peer had acknowledged it


@dataclass
class _Claim:
    mode: Standby
    membership: tuple[tuple[str, bool, int | None], ...]  # what the peers were when made


@dataclass
class _State:
    standby: Standby = Standby.NONE
    claim: _Claim | None = None
    claim_id: int = 0
    offer: Standby = Standby.NONE  # `release`: groups asked of the peer, until it saw that
    offer_id: int = 0
    offer_epoch: int | None = None  # our advert that first carried the offer


# a peer's offer from its point of view, as a takeover claim from ours (two nodes)
_OFFER_TAKEN = {Standby.ALL: "all", Standby.LOCAL: "foreign", Standby.FOREIGN: "local"}


class Policy:
    """Decides acquisitions, releases and going for one node. See the module docstring."""

    def __init__(self, settings: PolicySettings, *, now: float) -> None:
        if settings.local not in settings.nodes:
            raise LocalProtocolError(f"local node {settings.local!r} is not in {settings.nodes}")
        self.settings = settings
        self.local = settings.local
        self.nodes = tuple(sorted(settings.nodes))  # indexes in adverts: the same everywhere
        self.groups = settings.groups
        self.started = now
        self._index = {g.name: i for i, g in enumerate(self.groups)}
        self.digest = group_digest(tuple(g.name for g in self.groups))
        self._state = _State()
        self._peers: dict[str, PeerView] = {}
        self._adverts: dict[str, Advert] = {}
        self._last_advert: dict[str, Advert] = {}  # kept after a peer goes silent
        self._lost: dict[str, _Lost] = {}
        self._epoch = 0
        self._content: Advert | None = None
        self._published: Advert | None = None
        self._claim_epoch: dict[str, int] = {}  # group -> epoch that first claimed it
        self._offers_answered: dict[str, int] = {}  # peer -> offer_id answered
        self._local: dict[str, LocalGroup] = {g.name: LocalGroup(False) for g in self.groups}
        self._group_answered: dict[str, float | None] = {}
        self._isolation = Isolation.NO_WITNESSES
        self._reach_since: float | None = now  # not cut off since then, continuously
        self._pending: dict[str, str] = {}  # group -> "acquire" or "release", not settled
        self._actions: deque[Action] = deque()
        self.decisions: deque[Decision] = deque(maxlen=MAX_DECISIONS)
        self.decisions_made = 0  # ever, so a reader can tell which lines are new
        self._said: dict[tuple[str, Why], float] = {}
        self.fenced: str | None = None
        self._unfencible = False  # went without a watchdog: may serve once peers hear us
        self._suspended_until: float | None = None
        self._timer: float | None = None
        self._vote = NO_VOTE
        self._unheard_since: dict[str, float] = {}  # peer -> first seen unheard
        self._episodes: dict[str, _Episode] = {}  # peer -> the partition rules in force
        # our advert's arbiter flag: its changes (epoch, up), newest last, and the epoch of
        # the advert that first said "up" in the current unbroken run (None: down)
        self._flag_changes: deque[tuple[int, bool]] = deque(maxlen=8)
        self._up_epoch: int | None = None
        self._heartbeat: HeartbeatView | None = None

    # -- inputs ---------------------------------------------------------------------

    def standby(self, mode: str, now: float) -> None:
        """`hbctl standby all|local|foreign|off`: refuse those groups until `standby off`."""
        self._state.standby = Standby.parse(mode)
        self._end_claim(now, "a new operator command")
        self._decide_line(now, f"standby {mode}", "operator request")

    def takeover(self, mode: str, now: float, why: str = "operator request") -> None:
        """`hbctl takeover all|local|foreign|failback`: bring these groups here, once.

        The claim travels in the advert; every node makes the claimant the target of the
        groups it covers until the claim ends: at the next membership change (a peer lost,
        back or restarted) or operator command. It never overrides the partition rules."""
        claim = Standby.LOCAL if mode == "failback" else Standby.parse(mode)
        if claim is Standby.NONE:
            raise LocalProtocolError("takeover needs all, local, foreign or failback")
        self._state.standby = Standby.NONE
        self._state.claim = _Claim(claim, self._membership())
        self._state.claim_id = (self._state.claim_id + 1) & 0xFFFF
        for g in self.groups:
            if claim.covers(g.preferred == self.local) and self._local[g.name].failed:
                self._local[g.name] = LocalGroup(self._local[g.name].may_run, False)
        self._decide_line(now, f"takeover {mode}", f"{why}: until the next membership change")

    def release(self, mode: str, now: float) -> None:
        """`hbctl release all|local|foreign|failback` (Heartbeat's hb_standby): ask the
        peer to take these groups, once. The offer travels in the advert until every live
        peer's advert shows it saw it; a peer answers with a takeover claim of its own
        (`takeover`), so the hand-off follows the same rules, and nothing stays refused."""
        offer = Standby.FOREIGN if mode == "failback" else Standby.parse(mode)
        if offer is Standby.NONE:
            raise LocalProtocolError("release needs all, local, foreign or failback")
        live = sorted(n for n, p in self._peers.items() if p.alive and n not in self._lost)
        if not live:
            raise LocalProtocolError("release: no peer is heard, so none can take the groups")
        self._end_claim(now, "a new operator command")
        self._state.offer = offer
        self._state.offer_id = (self._state.offer_id + 1) & 0xFFFF or 1
        self._state.offer_epoch = None
        self._decide_line(
            now, f"hand over {mode}", f"operator request: asking {', '.join(live)} to take them"
        )

    def _track_offers(self, now: float) -> None:
        """Ours: withdrawn once every live peer saw it. The peers': answered once each."""
        state = self._state
        if state.offer is not Standby.NONE and state.offer_epoch is not None:
            me = self._index_of(self.local)
            live = [n for n, p in self._peers.items() if p.alive and n not in self._lost]
            seen = []
            for name in live:
                saw = self._adverts[name].saw(me) if name in self._adverts else None
                if saw is not None and (saw - state.offer_epoch) & 0xFFFF < 0x8000:
                    seen.append(name)
            if len(seen) == len(live):
                mode = state.offer.name.lower()
                state.offer = Standby.NONE
                why = f"{', '.join(sorted(seen))} saw it" if seen else "no peer is heard"
                self._decide_line(now, f"hand over {mode} delivered", why)
        for name, advert in self._adverts.items():
            if advert.offer is Standby.NONE:
                self._offers_answered.pop(name, None)
                continue
            if self._offers_answered.get(name) == advert.offer_id:
                continue
            self._offers_answered[name] = advert.offer_id
            mode = _OFFER_TAKEN[advert.offer]
            if self._state.standby is not Standby.NONE:
                self._decide_line(
                    now,
                    f"wait {name}'s groups",
                    f"{name} asked this node to take them ({advert.offer.name.lower()}), but "
                    f"this node is in standby {self._state.standby.name.lower()}",
                )
                continue
            self.takeover(mode, now, why=f"{name} asked this node to take them (hbctl release)")

    def suspend_takeovers(self, until: float, now: float, reason: str) -> None:
        """Start nothing before `until` (the view is stale: the loop was stalled)."""
        self._suspended_until = until
        self._decide_line(now, "start nothing for now", reason)

    def update(
        self,
        now: float,
        *,
        peers: tuple[PeerView, ...],
        adverts: Mapping[str, Advert],
        isolation: Isolation,
        local: Mapping[str, LocalGroup],
        group_answered: Mapping[str, float | None] | None = None,
        last_words: Mapping[str, Advert] | None = None,
        vote: Vote | None = None,
        heartbeat: HeartbeatView | None = None,
    ) -> None:
        """Take in the current view and decide; actions come out of `next_action()`.

        `last_words` are silent peers' final adverts (a node stopping cleanly says
        "stopped" and goodbye in one breath): what a lost peer last said it ran."""
        self._peers = {p.name: p for p in peers}
        self._heartbeat = heartbeat
        if vote is not None and vote != self._vote:
            self._vote = vote
            self._decide_line(now, "qnetd " + self._vote_text(), vote.reason)
        for p in peers:
            if not p.unheard:
                self._unheard_since.pop(p.name, None)
            else:
                self._unheard_since.setdefault(p.name, now)
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
        self._track_episodes(now)
        if isolation.cut_off:
            self._reach_since = None
        elif self._reach_since is None:
            self._reach_since = now  # probes sent while cut off proved nothing
        self._isolation = isolation
        self._local.update(local)
        self._group_answered = dict(group_answered or {})
        self._track_lost(now)
        self._check_claim(now)
        self._track_offers(now)
        self._decide(now)

    def fenced_elsewhere(self, now: float, reason: str) -> None:
        """The node goes for a reason found outside the policy (a stalled loop, a resource
        that cannot be stopped): release everything, take nothing."""
        if self.fenced is None:
            self.fenced = reason
            self._decide_line(now, "self-fence", reason)

    def note(self, now: float, decision: str, reason: str) -> None:
        """A decision made beside the policy (Heartbeat's resource protocol, for a
        Heartbeat peer: hbd.core.hbresources), kept with the policy's own lines."""
        self._decide_line(now, decision, reason)

    def settled(self, group: str) -> None:
        """The resource manager finished what was asked for `group`: ask again if needed."""
        self._pending.pop(group, None)

    # -- outputs --------------------------------------------------------------------

    def next_action(self) -> Action | None:
        return self._actions.popleft() if self._actions else None

    def get_timer(self) -> float | None:
        """When the decision may change with no new input (a budget, a probe window, the
        moment a peer may count us dead, the end of a suspension)."""
        return self._timer

    def advert(self) -> Advert:
        """This node's advert now (its epoch goes up whenever its content changed)."""
        self._publish()
        assert self._published is not None
        return self._published

    def peer_adverts(self) -> dict[str, Advert]:
        return dict(self._adverts)

    def targets(self) -> dict[str, str | None]:
        return {g.name: self._target(g) for g in self.groups}

    @property
    def isolation(self) -> Isolation:
        return self._isolation

    def summary(self) -> dict[str, object]:
        """The operator-visible state: standby and takeover in force on every node."""
        standby = {self.local: self._state.standby.name.lower()}
        claims: dict[str, str] = {}
        if self._state.claim is not None:
            claims[self.local] = self._state.claim.mode.name.lower()
        for name, advert in self._adverts.items():
            standby[name] = advert.standby.name.lower()
            if advert.claim is not Standby.NONE:
                claims[name] = advert.claim.name.lower()
        return {
            "standby": standby,
            "takeover": claims,
            "isolation": self._isolation.value,
            "lost": sorted(self._lost),
            "fenced": self.fenced,
            "vote": self._vote_text() if self.settings.arbiter is not None else None,
            "partition_rules": {n: e.rules.value for n, e in sorted(self._episodes.items())},
        }

    def partition_rules(self, peer: str) -> Rules | None:
        """The rules a partition from `peer` follows now (None: no partition, no arbiter)."""
        episode = self._episodes.get(peer)
        return episode.rules if episode is not None else None

    def _vote_text(self) -> str:
        v = self._vote
        if v.ack is None:
            return "no vote" + ("" if v.connected else " (not connected)")
        members = ", ".join(sorted(v.members))
        return f"{'ACK' if v.ack else 'NACK'} for {{{members}}}"

    # -- the decision ---------------------------------------------------------------

    def _decide(self, now: float) -> None:
        self._timer = None
        self._publish()
        running_any = any(lg.may_run for lg in self._local.values())
        if running_any:
            self._check_must_go(now)
        for lost in self._lost.values():
            lost.ours.update(
                g.name
                for g in self.groups
                if self._local[g.name].may_run or self._target(g) == self.local
            )
        for g in self.groups:
            mine = self._local[g.name]
            target = self._target(g)
            if self.fenced is not None:
                if mine.may_run:
                    self._release(g, now, "this node is going: " + self.fenced)
                continue
            hb = self._heartbeat
            if hb is not None and hb.peer not in self._lost:
                # a live Heartbeat peer: hand-offs follow its protocol, not rules 1-2
                want = hb.local if g.preferred == self.local else hb.foreign
                if mine.may_run and not want:
                    self._release(g, now, f"{hb.peer} takes it ({hb.reason})")
                elif want and not mine.started:
                    self._maybe_acquire(g, now, heartbeat=hb)
                else:
                    self._pending.pop(g.name, None)
                continue
            if mine.may_run and target is not None and self._refused_before(target, g):
                # a peer heard again whose advert has not come yet, and whose last advert
                # refused the group (standby, a failed start): releasing on the guess that it
                # changed its mind would stop the service only to start it again an advert
                # later. (Without such a last word the release goes ahead: if both run the
                # group after a partition, the sooner one stops the better.)
                self._say(now, g.name, Why.AGREEMENT, f"no advert from {target} yet: keeping it")
            elif mine.may_run and target != self.local:
                claim = self._claim_of(target) if target is not None else None
                if claim is not None and claim.covers(g.preferred == target):
                    why = f"{target} asked to take over (takeover {claim.name.lower()})"
                else:
                    why = f"its target is {target or 'no node'}"
                self._release(g, now, why)
            elif target == self.local and not mine.started:
                # not running, or in doubt (a status that timed out, a half-started group
                # after a crash): acquiring asks each resource's status before starting it
                self._maybe_acquire(g, now)
            else:
                self._pending.pop(g.name, None)

    def _check_must_go(self, now: float) -> None:
        """Rule 3: go when a peer may count us dead and will take over (alive but deaf to
        us), or when we are cut off from the world (isolated)."""
        for peer in self._peers.values():
            if peer.left:
                # a peer that said goodbye may start again into a partition, never hear us
                # and take over a budget after its start, counting on an isolated holder
                # having gone (rule 3 seen from its side)
                if self._isolation.cut_off:
                    self._fence(
                        now,
                        f"isolated: {peer.name} left and may start again without hearing this "
                        f"node, and {self._isolation.value}",
                    )
                    return
                continue
            if not peer.unheard:
                continue
            arbiter = self.settings.arbiter
            if arbiter is not None and self._rules(peer.name) in (Rules.VOTE, None):
                if self._must_go_without_vote(peer, arbiter, now):
                    return
                continue
            if peer.deaf:
                self._fence(
                    now,
                    f"{peer.name} does not hear this node any more (a one-way cut) and will "
                    "take its groups over",
                )
                return
            if self._isolation.cut_off:
                self._fence(
                    now,
                    f"isolated: {peer.name} may count this node dead and {self._isolation.value}",
                )
                return

    def _must_go_without_vote(self, peer: PeerView, arbiter: Arbiter, now: float) -> bool:
        """Rule 7, the holder's side: `peer` may count this node dead. Keep while qnetd's
        vote covers a membership without it; go on a NACK, or once D has passed since
        this node became unheard without the vote (the peer may have it by then)."""
        vote = self._vote
        if self._counted(peer.name) or (peer.alive and not peer.deaf):
            return False  # the vote is ours, or the peer hears us again (it lists us)
        if vote.refuses(peer.name):
            self._fence(
                now,
                f"{peer.name} may count this node dead and qnetd gave the vote to the other "
                f"side ({vote.reason})",
            )
            return True
        since = self._unheard_since.get(peer.name, now)
        deadline = since + arbiter.decision
        if vote.connected and arbiter.nack_first and self._confirmed(peer.name):
            # ffsplit tells every connected node NACK (and waits for its reply) before it
            # gives anyone an ACK: undecided but connected, this node hears first. A silent
            # break is noticed within `loss`, which the taker's hold time covers.
            self._say(
                now,
                "go",
                Why.VOTE,
                f"{peer.name} may count this node dead: keeping while qnetd decides "
                f"({vote.reason})",
            )
            return False
        if vote.lost_at is not None and vote.lost_at > since:
            deadline = now  # the vote was lost during the partition: the peer may get it
        if now < deadline:
            self._wait(deadline)
            self._say(
                now,
                "go",
                Why.VOTE,
                f"{peer.name} may count this node dead: keeping only with qnetd's vote, "
                f"going in {deadline - now:.1f} s without it ({vote.reason})",
            )
            return False
        if vote.gives(peer.name):
            why = f"qnetd's ACK came over a connection {peer.name} had not acknowledged"
        else:
            why = f"qnetd gave this node no vote within {arbiter.decision:g} s ({vote.reason})"
        self._fence(
            now, f"{peer.name} may count this node dead and {why}: it may have the vote itself"
        )
        return True

    def _maybe_acquire(
        self, g: GroupInfo, now: float, heartbeat: HeartbeatView | None = None
    ) -> None:
        if self._suspended_until is not None:
            if now < self._suspended_until:
                self._wait(self._suspended_until)
                self._say(now, g.name, Why.SUSPENDED, "the event loop stalled: settling first")
                return
            self._suspended_until = None
        if heartbeat is not None:
            if g.name not in self._pending:
                self._pending[g.name] = "acquire"
                reason = f"{heartbeat.peer} agreed ({heartbeat.reason})"
                self._actions.append(Acquire(g.name, reason))
                self._decide_line(now, f"acquire {g.name}", reason)
            return
        waiting = [n for n, p in self._peers.items() if not p.known]
        if waiting:
            self._say(
                now, g.name, Why.AGREEMENT, f"waiting for first contact with {', '.join(waiting)}"
            )
            return
        if not self._live_peers_agree(g, now):
            return
        for name, lost in self._lost.items():
            if self._may_run_on(name, g, lost) and not self._lost_peer_ready(name, g, now):
                return
        if g.name not in self._pending:
            self._pending[g.name] = "acquire"
            reason = self._acquire_reason(g)
            self._actions.append(Acquire(g.name, reason))
            self._decide_line(now, f"acquire {g.name}", reason)

    def _live_peers_agree(self, g: GroupInfo, now: float) -> bool:
        me = self._index_of(self.local)
        i = self._index[g.name]
        for name, peer in self._peers.items():
            if name in self._lost:
                continue
            if peer.deaf:
                self._say(now, g.name, Why.AGREEMENT, f"{name} does not hear us: it cannot agree")
                return False
            advert = self._adverts.get(name)
            if advert is None:
                self._say(now, g.name, Why.AGREEMENT, f"no advert from {name} yet")
                return False
            if advert.running[i] or advert.targets[i] != me:
                self._say(now, g.name, Why.AGREEMENT, f"{name} has not handed it over yet")
                return False
            claim = self._claim_epoch.get(g.name)
            saw = advert.saw(me)
            if claim is None or saw is None or (saw - claim) & 0xFFFF >= 0x8000:
                # its "target: you" predates our claim: wait for its answer to the claim
                self._say(now, g.name, Why.AGREEMENT, f"waiting for {name} to see our claim")
                return False
        return True

    def _lost_peer_ready(self, name: str, g: GroupInfo, now: float) -> bool:
        """Rule 4: may `g` be taken from the silent peer `name`, which may be running it?"""
        peer = self._peers.get(name)
        if peer is None:
            return True
        arbiter = self.settings.arbiter
        rules = self._rules(name)
        if arbiter is not None and not peer.left:
            if rules in (Rules.VOTE, None):
                return self._vote_ready(peer, g, arbiter, now)
            if not self._fallback_vote_allows(peer, g, rules, arbiter, now):
                return False
        if not peer.left and self._isolation.cut_off:
            self._say(
                now,
                g.name,
                Why.CUT_OFF,
                f"{name} is silent but this node is cut off ({self._isolation.value})",
            )
            return False
        window = self.settings.probe_window
        reach = self._reach_since if self._reach_since is not None else now
        if now < reach + window:
            self._wait(reach + window)
            self._say(
                now,
                g.name,
                Why.ANSWERS,
                "this node was cut off until just now: its probes of "
                f"{name} need {window:g} s of silence to mean anything",
            )
            return False
        # any address the peer may hold proves it alive: its own, and every service
        # address of a group it may be running
        lost = self._lost[name]
        answers = [
            self._group_answered.get(h.name)
            for h in self.groups
            if h.addresses and self._may_run_on(name, h, lost)
        ]
        answered = max((t for t in answers if t is not None), default=None)
        ready_at = self.takeover_at(peer, answered)
        if arbiter is not None and not peer.left:
            ready_at += arbiter.decision  # a peer under rule 7 without the vote goes by then
        if now < ready_at:
            self._wait(ready_at)
            why, text = self._wait_text(peer, answered, ready_at, now)
            self._say(now, g.name, why, text)
            return False
        return True

    def _fallback_vote_allows(
        self, peer: PeerView, g: GroupInfo, rules: Rules | None, arbiter: Arbiter, now: float
    ) -> bool:
        """Rule 8, the taker's side without a usable vote: a NACK still stops it (the vote
        went to the other side, which may hold by it), and a peer never heard since start
        is taken over from only with an ACK held as long as rule 7's."""
        vote = self._vote
        name = peer.name
        if vote.refuses(name):
            self._say(
                now,
                g.name,
                Why.VOTE,
                f"{name} is silent and qnetd gave the vote to the other side ({vote.reason})",
            )
            return False
        if rules is not Rules.FIRST:
            return True
        if not vote.gives(name) or vote.since is None:
            self._say(
                now,
                g.name,
                Why.VOTE,
                f"{name} was never heard since this node started; no vote from qnetd "
                f"({vote.reason})",
            )
            return False
        held_at = vote.since + arbiter.loss + (self.settings.peer_watchdog or 0.0)
        held_at += self.settings.margin
        if now < held_at:
            self._wait(held_at)
            self._say(now, g.name, Why.VOTE, f"holding qnetd's vote {held_at - now:.1f} s more")
            return False
        return True

    def _vote_ready(self, peer: PeerView, g: GroupInfo, arbiter: Arbiter, now: float) -> bool:
        """Rule 7, the taker's side: with qnetd's vote for a membership without the silent
        `peer`, held long enough for a peer that lost it to have noticed and been reset,
        and the budget plus the decision time passed since its last sign of life."""
        vote = self._vote
        name = peer.name
        if not self._counted(name) or vote.since is None:
            why = f"no vote from qnetd ({vote.reason})"
            if vote.gives(name):
                why = f"qnetd's ACK came over a connection {name} had not acknowledged"
            self._say(now, g.name, Why.VOTE, f"{name} is silent; {why}")
            return False
        watchdog = peer.watchdog if peer.last_heard is not None else self.settings.peer_watchdog
        held_at = vote.since + arbiter.loss + (watchdog or 0.0) + self.settings.margin
        lost = self._lost[name]
        answers = [
            self._group_answered.get(h.name)
            for h in self.groups
            if h.addresses and self._may_run_on(name, h, lost)
        ]
        answered = max((t for t in answers if t is not None), default=None)
        budget_at = self.takeover_at(peer, answered) + arbiter.decision
        ready_at = max(held_at, budget_at)
        if now < ready_at:
            self._wait(ready_at)
            self._say(
                now,
                g.name,
                Why.BUDGET,
                f"{name} may still run it: qnetd gave this node the vote; takeover in "
                f"{ready_at - now:.1f} s ({self._budget_text(peer)} + decision "
                f"{arbiter.decision:g} s; vote held {arbiter.loss:g} s + its watchdog)",
            )
            return False
        return True

    def _wait_text(
        self, peer: PeerView, answered: float | None, ready_at: float, now: float
    ) -> tuple[Why, str]:
        """Why a silent peer's group is not taken yet: it answers now, or the budget runs."""
        name = peer.name
        heard = peer.last_heard if peer.last_heard is not None else self.started
        fresh = now - 2 * self.settings.keepalive - ANSWER_SLACK
        own = peer.answered if peer.answered is not None else heard
        service = answered if answered is not None else heard
        if own > heard and own >= fresh:
            return Why.ANSWERS, (
                f"{name} is silent on every path but its address answers: it is "
                "partitioned, not dead; nothing moves"
            )
        if service > heard and service >= fresh:
            return Why.ANSWERS, (
                f"{name} is silent on every path but a service address it may hold "
                "answers: it is partitioned, not dead; nothing moves"
            )
        since = "its address last answered" if max(own, service) > heard else None
        return Why.BUDGET, (
            f"{name} may still run it: takeover in {ready_at - now:.1f} s "
            f"({self._budget_text(peer, since)})"
        )

    def takeover_at(self, peer: PeerView, *answers: float | None) -> float:
        """Rules 4 and 5: when a peer that may run a group has certainly been reset if it had
        to go. The budget counts from its last sign of life: a heartbeat, or an answer to a
        probe of its own addresses (or of the group's service addresses, `answers`). A
        peer partitioned but answering keeps pushing it out: nothing moves."""
        s = self.settings
        base = peer.last_heard if peer.last_heard is not None else self.started
        for t in (peer.answered, *answers):
            if t is not None and t > base:
                base = t
        watchdog = peer.watchdog if peer.last_heard is not None else s.peer_watchdog
        dead = max(peer.deadtime, s.deadping)
        if not watchdog:  # nothing resets it, no margin buys safety: Heartbeat's deadtime
            return base + dead
        return base + dead + s.keepalive + watchdog + s.margin

    def _release(self, g: GroupInfo, now: float, reason: str) -> None:
        if self._pending.get(g.name) == "release":
            return  # asked already (a release overrides an acquisition under way)
        self._pending[g.name] = "release"
        self._actions.append(Release(g.name, reason))
        self._decide_line(now, f"release {g.name}", reason)

    def _fence(self, now: float, reason: str) -> None:
        if self.fenced is not None:
            return
        self.fenced = reason
        self._unfencible = not self.settings.watchdog_armed
        self._actions.append(SelfFence(reason))
        if self.settings.watchdog_armed:
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
        for n in self.nodes:
            claim = self._claim_of(n)
            if n in candidates and claim is not None and claim.covers(g.preferred == n):
                return n
        if self.settings.auto_failback is AutoFailback.OFF:
            for n in candidates:
                if self._running_on(n, g):
                    return n
        return candidates[0]

    def _claim_of(self, node: str) -> Standby | None:
        if node == self.local:
            return self._state.claim.mode if self._state.claim is not None else None
        advert = self._adverts.get(node)
        if advert is None or advert.claim is Standby.NONE:
            return None
        return advert.claim

    def _reachable(self, node: str) -> bool:
        if node == self.local:
            return self.fenced is None
        peer = self._peers.get(node)
        return peer is not None and peer.alive and not peer.deaf and node not in self._lost

    def _refuses(self, node: str, g: GroupInfo) -> bool:
        if node == self.local:
            return self._state.standby.covers(g.preferred == node) or self._local[g.name].failed
        advert = self._adverts.get(node)
        if advert is None:
            return False
        return advert.failed_group(self._index[g.name]) or advert.standby.covers(
            g.preferred == node
        )

    def _refused_before(self, node: str, g: GroupInfo) -> bool:
        """`node` is a peer whose current advert has not come, and its last one (from
        before it went silent) refused `g`."""
        if node == self.local or node in self._adverts:
            return False
        last = self._last_advert.get(node)
        return last is not None and (
            last.failed_group(self._index[g.name]) or last.standby.covers(g.preferred == node)
        )

    def _running_on(self, node: str, g: GroupInfo) -> bool:
        """Does `node` run `g`, for stickiness (auto_failback off)? Only a group known
        started counts, and a peer only by what it advertised."""
        if node == self.local:
            return self._local[g.name].started
        advert = self._adverts.get(node)
        return advert is not None and advert.started_group(self._index[g.name])

    def _may_run_on(self, node: str, g: GroupInfo, lost: _Lost) -> bool:
        """Could the silent `node` be running `g`? Yes if this node ran or targeted `g` since
        `node` went silent: `node` may have lost us too and taken it over, once its budget
        for us passed. Otherwise yes unless its last advert said it was not running it and
        did not mean to (a node starts a group only after advertising that it is the target
        and hearing its peers agree, or as such a takeover). A peer that said goodbye
        stopped: it runs what its last words said it still ran, and nothing more."""
        advert = lost.advert
        i = self._index[g.name]
        peer = self._peers.get(node)
        if peer is not None and peer.left and advert is not None:
            return advert.running[i]
        if g.name in lost.ours:
            return True
        if advert is None:
            return True
        return advert.running[i] or advert.targets[i] == self._index_of(node)

    def _track_lost(self, now: float) -> None:
        for name, peer in self._peers.items():
            silent = not peer.alive and peer.known
            if silent and name not in self._lost:
                self._lost[name] = _Lost(now, peer.last_heard, self._last_advert.get(name))
                why = "said goodbye" if peer.left else "is silent on every path"
                self._decide_line(now, f"peer {name} lost", why)
            elif peer.alive and name in self._lost:
                del self._lost[name]
                self._decide_line(now, f"peer {name} back", "heard again")
        if self._unfencible and all(
            p.alive and not p.deaf and not p.unheard for p in self._peers.values()
        ):
            # no watchdog reset us: with every peer hearing us again we may serve
            self.fenced = None
            self._unfencible = False
            self._decide_line(now, "serve again", "every peer hears this node again")

    # -- rule 8: which rules a partition follows ----------------------------------------

    def _track_episodes(self, now: float) -> None:
        """Fix the rules of a partition when it begins (the peer first unheard or silent);
        forget them when the peer hears us and is heard again."""
        if self.settings.arbiter is None:
            return
        for name, peer in self._peers.items():
            partitioned = peer.unheard or (not peer.alive and peer.known)
            if not partitioned:
                if self._episodes.pop(name, None) is not None:
                    self._decide_line(now, f"partition from {name} over", "heard both ways")
                continue
            if name in self._episodes:
                continue
            episode = self._begin_episode(name)
            self._episodes[name] = episode
            self._decide_line(now, f"partition from {name}", episode.rules.value)

    def _begin_episode(self, name: str) -> _Episode:
        last = self._last_advert.get(name)
        if last is None:
            return _Episode(Rules.FIRST, None)
        if last.arbiter is None:
            return _Episode(Rules.PEER_HAS_NONE, None)
        acked = last.saw(self.nodes.index(self.local))
        ours_up = acked is not None and self._flag_at(acked)
        confirmed = self._up_epoch is not None and acked is not None
        confirmed = confirmed and self._age(self._up_epoch or 0) >= self._age(acked or 0)
        if not ours_up and not last.arbiter:
            return _Episode(Rules.WITHOUT, None)
        return _Episode(Rules.VOTE, self._up_epoch if confirmed else None)

    def _age(self, epoch: int) -> int:
        return (self._epoch - epoch) & 0xFFFF

    def _flag_at(self, epoch: int) -> bool:
        """Our advert's arbiter flag in the advert of `epoch` (False when too old to say)."""
        age = self._age(epoch)
        for changed, up in reversed(self._flag_changes):
            if self._age(changed) >= age:
                return up
        return False

    def _rules(self, peer: str) -> Rules | None:
        episode = self._episodes.get(peer)
        return episode.rules if episode is not None else None

    def _confirmed(self, peer: str) -> bool:
        """Our qnetd connection has been up without a break since an advert `peer`
        acknowledged before the partition: it knows we may hold the vote."""
        episode = self._episodes.get(peer)
        return (
            episode is not None
            and episode.up_epoch is not None
            and episode.up_epoch == self._up_epoch
            and self._vote.connected
        )

    def _counted(self, peer: str) -> bool:
        """qnetd's ACK for a membership without `peer`, over a confirmed connection."""
        return self._vote.gives(peer) and self._confirmed(peer)

    def _membership(self) -> tuple[tuple[str, bool, int | None], ...]:
        return tuple(
            (p.name, p.alive and not p.deaf, p.generation)
            for p in sorted(self._peers.values(), key=lambda p: p.name)
        )

    def _check_claim(self, now: float) -> None:
        claim = self._state.claim
        if claim is not None and claim.membership != self._membership():
            self._end_claim(now, "the membership changed")

    def _end_claim(self, now: float, why: str) -> None:
        if self._state.claim is not None:
            mode = self._state.claim.mode.name.lower()
            self._state.claim = None
            self._decide_line(now, f"takeover {mode} ended", why)

    def _budget_text(self, peer: PeerView, since: str | None = None) -> str:
        s = self.settings
        watchdog = peer.watchdog if peer.last_heard is not None else s.peer_watchdog
        base = "since last heard" if peer.last_heard is not None else "since this node started"
        if since is not None:
            base = f"since {since}"
        dead = max(peer.deadtime, s.deadping)
        if watchdog:
            return (
                f"{base}: deadtime {dead:g} + keepalive {s.keepalive:g} + its watchdog "
                f"{watchdog:g} + {s.margin:g} s"
            )
        return f"{base}: it has no watchdog, safety rests on the paths and probes alone"

    def _acquire_reason(self, g: GroupInfo) -> str:
        if not self._lost:
            return "its target is this node and every peer agreed"
        if self.settings.arbiter is not None and any(self._counted(n) for n in self._lost):
            risky = sorted(n for n, lost in self._lost.items() if self._may_run_on(n, g, lost))
            if risky:
                return (
                    f"taking over from {', '.join(risky)}: qnetd gave this node the vote "
                    f"({self._vote.reason}) and the budget plus decision time passed"
                )
        risky = sorted(n for n, lost in self._lost.items() if self._may_run_on(n, g, lost))
        if not risky:
            return (
                f"{', '.join(sorted(self._lost))} said it does not run it "
                "(its last advert before it went)"
            )
        text = f"taking over from {', '.join(risky)}: budget passed, nothing of it answers"
        unfenced = [
            n for n in risky if self._peers.get(n) is not None and not self._peers[n].watchdog
        ]
        if unfenced:
            text += f" ({', '.join(unfenced)}: no watchdog, safety rests on the paths alone)"
        return text

    # -- the advert -------------------------------------------------------------------

    def _publish(self) -> None:
        me = self.nodes.index(self.local)
        hears = sum(
            1 << self.nodes.index(p.name)
            for p in self._peers.values()
            if p.alive and p.name not in self._lost
        )
        targets = tuple(self._index_of(self._target(g)) for g in self.groups)
        claim = self._state.claim.mode if self._state.claim is not None else Standby.NONE
        content = Advert(
            digest=self.digest,
            running=tuple(self._local[g.name].may_run for g in self.groups),
            targets=targets,
            hears=hears | 1 << me,
            failed=tuple(self._local[g.name].failed for g in self.groups),
            standby=self._state.standby,
            claim=claim,
            claim_id=self._state.claim_id,
            started=tuple(self._local[g.name].started for g in self.groups),
            arbiter=self._vote.connected if self.settings.arbiter is not None else None,
            witness=self._isolation is Isolation.REACHES,
            offer=self._state.offer,
            offer_id=self._state.offer_id if self._state.offer is not Standby.NONE else 0,
        )
        old = self._content
        if content != old:
            self._epoch = (self._epoch + 1) & 0xFFFF
            self._content = content
            if content.offer is not Standby.NONE and (
                old is None or (old.offer, old.offer_id) != (content.offer, content.offer_id)
            ):
                self._state.offer_epoch = self._epoch  # the first advert that carries it
            if content.arbiter is not None and (old is None or old.arbiter != content.arbiter):
                self._flag_changes.append((self._epoch, content.arbiter))
                self._up_epoch = self._epoch if content.arbiter else None
            for i, g in enumerate(self.groups):
                claimed_before = old is not None and old.targets[i] == me
                if targets[i] == me and not claimed_before:
                    self._claim_epoch[g.name] = self._epoch  # first said "mine" in this one
                elif targets[i] != me:
                    self._claim_epoch.pop(g.name, None)
        seen = tuple(self._adverts[n].epoch if n in self._adverts else 0 for n in self.nodes)
        self._published = dataclasses.replace(content, epoch=self._epoch, seen=seen)

    def _index_of(self, node: str | None) -> int:
        return NO_NODE if node is None else self.nodes.index(node)

    def _wait(self, at: float) -> None:
        self._timer = at if self._timer is None else min(self._timer, at)

    def _decide_line(self, now: float, decision: str, reason: str) -> None:
        self.decisions.append(Decision(now, decision, reason))
        self.decisions_made += 1

    def _say(self, now: float, key: str, why: Why, reason: str) -> None:
        """A waiting reason, recorded once a second at most (the countdown)."""
        last = self._said.get((key, why))
        if last is None or now - last >= 1.0:
            self._said[(key, why)] = now
            self._decide_line(now, f"wait {key}", reason)
