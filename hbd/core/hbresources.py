"""Heartbeat 3.0.6's resource protocol, for an hbd node whose peer is a Heartbeat node.

Theory of operation
-------------------
docs/interop.md, "Resource groups beside Heartbeat", has the outcomes table; this module
is how hbd reaches them. Between two hbd nodes the policy hands groups over through
adverts (`hbd.core.policy`, rules 1-2). A Heartbeat 3.0.6 node knows nothing of adverts:
it acquires, releases and hands over by its own `nice_failback` protocol (its
`heartbeat/hb_resource.c`), which this module follows step for step, so a Heartbeat peer
is treated with exactly the rules Heartbeat itself follows -- never weaker ones:

- Holdings are classes, relative to the sender: `local` (groups whose haresources line
  names the sender first), `foreign` (the others), `all`, `none`. A `t=resource` message
  says what the sender holds or is acquiring (`rsc_hold`) and whether it is done moving
  (`isstable`). Internally every class is kept in this node's terms.
- Start (`t=starting`): a node going active asks; every peer answers with `t=resource`.
  Once the peer is stable, the newcomer takes its local groups unless the peer holds
  them (Heartbeat's principle 1); if both start together and neither becomes stable,
  each takes its local groups after RQSTDELAY (10 s, principle 2).
- Hand-off (`hb_standby`, `t=ask_resources`): the holder says `me`, the taker `other`,
  the holder releases (`t=resource ... isstable=0 info=standby`) and says `done`, the
  taker acquires and says `done`, both send `t=resource ... isstable=1`. `hb_takeover`
  (`t=hb_takeover`) asks the holder to start that hand-off. With `auto_failback on` a
  node holding the peer's local groups hands them back this way once the peer is stable.
- Stop: the leaving node releases, says `t=resource rsc_hold=none isstable=0
  info=shutdown` and `t=shutdone`; the other takes everything at once.

What this module does NOT decide: a silent peer. Heartbeat takes over at deadtime (after
STONITH if configured); hbd's policy keeps its own rules 3-5 for that (its budget for a
peer without a watchdog is Heartbeat's deadtime; a ping witness and probes only ever
delay a takeover), so a partition is handled at least as safely as Heartbeat would.

Sans-I/O, after aioquic: inputs are `begin`, `message`, `peer_lost`, `peer_left`,
`local_state`, `standby`, `takeover`, `shutdown`, `handle_timer` (with `now`); outputs are
`wants(local)` (should this node's groups of that class run?), `next_message()` (a
Heartbeat message to send: type and fields), `get_timer()` and decision lines.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from hbd.core.errors import LocalProtocolError
from hbd.core.model import AutoFailback

RQSTDELAY = 10.0  # seconds: both starting, neither stable: take the local groups then
STANDBY_INIT_TIMEOUT = 10.0  # seconds for the peer to answer a hand-off's `me`
STANDBY_TIMEOUT = 3600.0  # seconds for a hand-off under way to finish (Heartbeat: an hour)

# the message types this module reads
MESSAGE_TYPES = frozenset(
    {"starting", "resource", "ask_resources", "hb_takeover", "ip-request", "shutdone"}
)


class Rsc(enum.IntFlag):
    """A set of groups as Heartbeat names it, relative to one node."""

    NONE = 0
    LOCAL = 1
    FOREIGN = 2
    ALL = 3

    @property
    def wire(self) -> str:
        return _WIRE[self]

    def flipped(self) -> Rsc:
        """The same groups seen from the other node (its local are our foreign)."""
        return Rsc(
            (Rsc.LOCAL if self & Rsc.FOREIGN else 0) | (Rsc.FOREIGN if self & Rsc.LOCAL else 0)
        )

    @staticmethod
    def parse(text: str | None, *, what: str) -> Rsc:
        for rsc, name in _WIRE.items():
            if text == name:
                return rsc
        raise LocalProtocolError(f"{what}: {text!r} is none of none, local, foreign, all")


_WIRE = {Rsc.NONE: "none", Rsc.LOCAL: "local", Rsc.FOREIGN: "foreign", Rsc.ALL: "all"}


class RState(enum.Enum):
    """Heartbeat's `resourcestate` (hb_resource.c)."""

    INIT = "init"
    STARTING = "starting"
    BOTHSTARTING = "both starting"
    RSCRCVD = "resources received"
    STABLE = "stable"
    SHUTDOWN = "shutdown"


class Handshake(enum.Enum):
    """Heartbeat's `going_standby`: where a hand-off stands on this node."""

    NOT = "none"
    ME = "this node hands over"
    OTHER = "this node takes over"
    DONE = "finishing"


@dataclass(frozen=True, slots=True)
class HbMessage:
    """A Heartbeat message to send to the peer: its type and fields (src, seq etc. are
    the engine's)."""

    type: str
    fields: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class HbDecision:
    at: float
    decision: str
    reason: str


@dataclass
class _Work:
    """Resource work under way for the protocol, and what to say when it is done."""

    kind: str  # "acquire" or "release"
    rsc: Rsc  # in this node's terms
    then: str  # "held" (t=resource ... isstable=1 + comment), "done" (ask_resources done)
    comment: str | None = None


class HeartbeatResources:
    """Heartbeat's nice_failback protocol for this node facing one Heartbeat peer."""

    def __init__(self, local: str, peer: str, auto_failback: AutoFailback, now: float) -> None:
        self.local = local
        self.peer = peer
        self.auto_failback = auto_failback is AutoFailback.ON
        self.rstate = RState.INIT
        self.hold = Rsc.NONE  # i_hold_resources: held, or being acquired
        self.peer_holds = Rsc.NONE  # other_holds_resources, in our terms
        self.peer_stable = False
        self.handshake = Handshake.NOT
        self.handshake_rsc = Rsc.ALL  # standby_rsctype: as on the wire (initiator's terms)
        self.handshake_until: float | None = None
        self.needs_failback = False
        self.takeover_at: float | None = None  # local_takeover_time
        self.refuse = Rsc.NONE  # hbd's `standby`: classes this node must not take
        self._work: list[_Work] = []
        self._out: deque[HbMessage] = deque()
        self.decisions: deque[HbDecision] = deque(maxlen=40)
        # this node's groups by class, as `local_state` last said (nothing known yet: no
        # acquisition or release counts as finished before it is seen to be)
        self._running = Rsc.NONE
        self._started = Rsc.NONE
        self._stopped = Rsc.NONE

    # -- inputs ---------------------------------------------------------------------

    def begin(self, now: float, running: Rsc) -> None:
        """The peer is first known to be a Heartbeat node (or came back). A node running
        nothing announces itself (`t=starting`); one already serving (it took over while
        the peer was away) is stable and owes the peer its groups back on failback."""
        self._running = running
        if running is Rsc.NONE and self.rstate is RState.INIT:
            self._send("starting")
            self.rstate = RState.STARTING
            self._line(now, "announce start", f"{self.peer} is a Heartbeat node: t=starting")
            return
        self.rstate = RState.STABLE
        self.hold = running
        self.peer_stable = True
        self.needs_failback = bool(running & Rsc.FOREIGN)
        self._send_held(True, None)

    def message(self, now: float, mtype: str, fields: dict[str, str]) -> None:
        """A resource message from the peer (types in MESSAGE_TYPES). Raises
        LocalProtocolError for one that cannot be understood; nothing changes then."""
        if mtype == "starting":
            self._starting(now)
        elif mtype == "resource":
            held = Rsc.parse(fields.get("rsc_hold"), what="t=resource rsc_hold").flipped()
            stable = fields.get("isstable")
            if stable not in (None, "0", "1"):
                raise LocalProtocolError(f"t=resource isstable: {stable!r} is neither 0 nor 1")
            full = fields.get("rtype") == "full"
            self._resource(now, held, None if stable is None else stable == "1", full)
        elif mtype == "ask_resources":
            info = fields.get("info")
            if info not in ("me", "other", "done"):
                raise LocalProtocolError(
                    f"t=ask_resources info: {info!r} is none of me, other, done"
                )
            raw = fields.get("rsc_hold")
            rsc = Rsc.ALL if raw is None else Rsc.parse(raw, what="t=ask_resources rsc_hold")
            self._ask(now, info, rsc, from_me=False)
        elif mtype == "hb_takeover":
            raw = fields.get("rsc_hold") or "all"
            # the peer's rc.d/hb_takeover runs hb_standby with the set seen from here
            wanted = (
                Rsc.LOCAL if raw == "failback" else Rsc.parse(raw, what="t=hb_takeover rsc_hold")
            )
            self._line(now, f"{self.peer} asks to take over", f"hb_takeover {raw}")
            try:
                self.standby(wanted.flipped().wire, now)
            except LocalProtocolError as e:
                self._line(now, "hb_takeover ignored", str(e))
        elif mtype == "ip-request":
            group = fields.get("ipaddr")
            if not group:
                raise LocalProtocolError("t=ip-request without ipaddr")
            self._line(now, f"{self.peer} asks for {group}", "ip-request (auto_failback legacy)")
        elif mtype == "shutdone":
            self.peer_left(now)

    def peer_lost(self, now: float) -> None:
        """The peer went silent (hb_rsc_recover_dead_resources): any hand-off is void; what
        it held is taken over by the policy's rules for a silent peer."""
        self.handshake = Handshake.NOT
        self.handshake_until = None
        self.needs_failback = True
        self.peer_holds = Rsc.NONE
        self.peer_stable = True
        if self.rstate is not RState.SHUTDOWN:
            self.rstate = RState.STABLE

    def peer_left(self, now: float) -> None:
        """The peer said goodbye (t=shutdone): it released everything first."""
        self.peer_lost(now)
        self._line(now, f"{self.peer} left", "t=shutdone: it released its groups")

    def local_state(self, now: float, running: Rsc, started: Rsc, stopped: Rsc) -> None:
        """This node's groups by class: `running` any may run, `started` every group is
        started (or failed to start), `stopped` nothing of it may run."""
        self._running, self._started, self._stopped = running, started, stopped
        while self._work:
            work = self._work[0]
            done = (
                (work.rsc & started) == work.rsc
                if work.kind == "acquire"
                else ((work.rsc & stopped) == work.rsc)
            )
            if not done:
                return
            self._work.pop(0)
            if work.then == "held":
                self._send_held(True, work.comment)
            elif work.then == "done":
                self._send("ask_resources", rsc_hold=self.handshake_rsc.wire, info="done")
                self._ask(now, "done", self.handshake_rsc, from_me=True)

    def handle_timer(self, now: float) -> None:
        if self.takeover_at is not None and now >= self.takeover_at:
            self.takeover_at = None
            if self.rstate is RState.RSCRCVD:
                self._line(now, "take local groups", f"neither node stable after {RQSTDELAY:g} s")
                self._req_our_resources(now, anyway=False)
                self.rstate = RState.STABLE
                self._send_held(True, None)
        if self.handshake_until is not None and now >= self.handshake_until:
            self._line(now, "hand-off cancelled", f"{self.peer} did not answer in time")
            self.handshake = Handshake.NOT
            self.handshake_until = None

    def standby(self, mode: str, now: float) -> None:
        """hb_standby: hand `mode` (this node's terms) to the peer. Raises
        LocalProtocolError when Heartbeat's rules do not allow it now."""
        rsc = Rsc.FOREIGN if mode == "failback" else Rsc.parse(mode, what="standby")
        if self.handshake is not Handshake.NOT:
            raise LocalProtocolError(f"a hand-off is already under way ({self.handshake.value})")
        if not self.peer_stable:
            raise LocalProtocolError(f"{self.peer} is not stable (its resources are moving)")
        if self.rstate is not RState.STABLE:
            raise LocalProtocolError(f"this node is not stable ({self.rstate.value})")
        self._line(now, f"hand over {rsc.wire}", f"asking {self.peer} to take them (hb_standby)")
        self._send("ask_resources", rsc_hold=rsc.wire, info="me")
        self._ask(now, "me", rsc, from_me=True)

    def takeover(self, mode: str, now: float) -> None:
        """hb_takeover: ask the peer to hand `mode` (this node's terms) over."""
        if mode not in ("all", "local", "foreign", "failback"):
            raise LocalProtocolError(f"takeover: {mode!r} is none of all, local, foreign, failback")
        self._line(now, f"take over {mode}", f"asking {self.peer} to hand them over (hb_takeover)")
        self._send("hb_takeover", rsc_hold=mode)

    def refuse_groups(self, refuse: Rsc) -> None:
        """hbd's `standby` (persistent): never take these classes until it is lifted."""
        self.refuse = refuse

    def shutdown(self, now: float) -> None:
        """This node stops (hb_giveup_resources): everything goes, then t=shutdone."""
        if self.rstate is RState.SHUTDOWN:
            return
        self.rstate = RState.SHUTDOWN
        self.hold = Rsc.NONE
        self._work.clear()
        self._send_held(False, "shutdown")
        self._line(now, "give up everything", "this node stops: t=shutdone follows")

    # -- outputs --------------------------------------------------------------------

    def wants(self, local: bool) -> bool:
        """Should this node's local (or foreign) groups run, by Heartbeat's rules?"""
        rsc = Rsc.LOCAL if local else Rsc.FOREIGN
        acquiring = any(w.kind == "acquire" and w.rsc & rsc for w in self._work)
        return bool(self.hold & rsc) or acquiring

    def next_message(self) -> HbMessage | None:
        return self._out.popleft() if self._out else None

    def get_timer(self) -> float | None:
        times = [t for t in (self.takeover_at, self.handshake_until) if t is not None]
        return min(times, default=None)

    def summary(self) -> dict[str, object]:
        return {
            "peer": self.peer,
            "state": self.rstate.value,
            "holds": self.hold.wire,
            "peer_holds": self.peer_holds.wire,
            "peer_stable": self.peer_stable,
            "hand_off": self.handshake.value,
        }

    # -- Heartbeat's rules ------------------------------------------------------------

    def _starting(self, now: float) -> None:
        if self.rstate in (RState.RSCRCVD, RState.STABLE, RState.SHUTDOWN):
            pass
        elif self.rstate is RState.STARTING:
            self.rstate = RState.BOTHSTARTING
        else:
            self._line(now, f"{self.peer} starting ignored", f"in state {self.rstate.value}")
            return
        self.peer_stable = False
        self.peer_holds = Rsc.NONE
        self._send_held(self.rstate is RState.STABLE, None)

    def _resource(self, now: float, held: Rsc, stable: bool | None, full: bool) -> None:
        state = self.rstate
        new = state
        if state in (RState.STARTING, RState.BOTHSTARTING):
            new = RState.RSCRCVD
        elif state not in (RState.RSCRCVD, RState.STABLE, RState.SHUTDOWN):
            self._line(now, f"{self.peer}'s t=resource ignored", f"in state {state.value}")
            return
        if full:
            self.peer_holds = held
        elif held is not Rsc.NONE:
            self.peer_holds |= held
        else:
            self.peer_holds = Rsc.NONE
        if stable is True and not self.peer_stable:
            self.peer_stable = True
            self._send_held(state is RState.STABLE, None)
            self._auto_failback(now)
        elif stable is False:
            self.peer_stable = False
        if state not in (RState.STABLE, RState.SHUTDOWN) and self.peer_stable:
            self._req_our_resources(now, anyway=False)
            new = RState.STABLE
            self._send_held(True, None)
            self._auto_failback(now)
        self.rstate = new
        if new is RState.RSCRCVD and self.takeover_at is None:
            self.takeover_at = now + RQSTDELAY
        if self.hold & Rsc.LOCAL and self.peer_holds & Rsc.LOCAL:
            self._line(now, "both nodes hold our local groups", f"{self.peer} says it holds them")
        if self.hold & Rsc.FOREIGN and self.peer_holds & Rsc.FOREIGN:
            self._line(now, "both nodes hold foreign groups", f"{self.peer} says it holds them")

    def _req_our_resources(self, now: float, *, anyway: bool) -> None:
        """Take this node's local groups unless someone holds them already."""
        if self.rstate is RState.SHUTDOWN:
            return
        if (self.peer_holds & Rsc.LOCAL or self.hold & Rsc.LOCAL) and not anyway:
            self._line(now, "local groups: none to acquire", f"{self.peer} holds them")
            return
        if self.refuse & Rsc.LOCAL:
            self._line(now, "local groups: not acquired", "this node is in standby")
            return
        self.hold |= Rsc.LOCAL
        self._line(now, "take local groups", f"{self.peer} is stable and does not hold them")
        self._work.append(_Work("acquire", Rsc.LOCAL, "held", "req_our_resources()"))
        self.local_state(now, self._running, self._started, self._stopped)

    def _auto_failback(self, now: float) -> None:
        """PerformAutoFailback: hand the peer's local groups back once it is stable."""
        if not (self.hold & Rsc.FOREIGN) or not self.needs_failback or not self.auto_failback:
            self.needs_failback = False
            return
        if self.handshake is not Handshake.NOT:
            self._line(now, "auto failback ignored", "a hand-off is under way")
            self.needs_failback = False
            return
        self.needs_failback = False
        self._line(now, "hand back foreign groups", f"auto_failback on: {self.peer} is stable")
        self._send("ask_resources", rsc_hold=Rsc.FOREIGN.wire, info="me")
        self._ask(now, "me", Rsc.FOREIGN, from_me=True)

    def _ask(self, now: float, info: str, rsc: Rsc, *, from_me: bool) -> None:
        """ask_for_resources: the three-phase hand-off, for a message from either side.
        `rsc` is as on the wire, in the initiator's terms."""
        if self.rstate is RState.SHUTDOWN:
            return
        if (
            self.handshake_until is not None
            and info == "me"
            and now < self.handshake_until
            and not from_me
        ):
            self._line(now, f"{self.peer}'s hand-off ignored", "a hand-off is under way")
            return
        state = self.handshake
        ignored = False
        if state is Handshake.NOT:
            if info != "me":
                ignored = True
            elif not self.peer_stable:
                self._line(now, f"hand-off {info} ignored", f"{self.peer} is in flux")
                return
            elif self.rstate is not RState.STABLE:
                self._line(now, f"hand-off {info} ignored", "this node's groups are in flux")
                return
            elif from_me:
                self.handshake_rsc = rsc
                self.peer_stable = False
                self.handshake = Handshake.ME
                self.handshake_until = now + STANDBY_INIT_TIMEOUT
            else:
                ours = rsc.flipped()  # the initiator's set, in our terms
                if ours & self.refuse:
                    self._line(
                        now, f"{self.peer}'s hand-off refused", "this node is in standby for them"
                    )
                    return
                self.handshake_rsc = rsc
                self.peer_stable = False
                self.handshake = Handshake.OTHER
                self._line(now, f"take {ours.wire} groups", f"{self.peer} hands them over")
                self._send("ask_resources", rsc_hold=rsc.wire, info="other")
                self.handshake_until = now + STANDBY_TIMEOUT
        elif state is Handshake.ME:
            if not from_me and info == "other":
                self.handshake_rsc = rsc
                self.handshake_until = now + STANDBY_TIMEOUT
                self._go_standby(now, mine=True, rsc=rsc)
            elif from_me and info == "done":
                self.handshake = Handshake.DONE
                self.hold &= ~self.handshake_rsc
                self.handshake_until = now + STANDBY_TIMEOUT
            else:
                ignored = True
        elif state is Handshake.OTHER:
            self.handshake_rsc = rsc
            if info == "done" and not from_me:
                self.handshake_until = now + STANDBY_TIMEOUT
                self.handshake = Handshake.DONE  # before: the acquisition may finish at once
                self._go_standby(now, mine=False, rsc=rsc)
            elif not (from_me and info == "other"):
                ignored = True
        else:  # DONE
            self.handshake_rsc = rsc
            if info == "done":
                self.handshake = Handshake.NOT
                self.handshake_until = None
                if from_me:
                    self.hold |= rsc.flipped() if rsc is not Rsc.ALL else Rsc.ALL
                    self._line(now, f"hand-off done: holding {self.hold.wire}", "acquired")
                else:
                    self._line(now, "hand-off done", f"{self.peer} took the groups")
                self._send_held(True, None)
            else:
                ignored = True
        if ignored:
            self._line(now, f"hand-off message {info!r} ignored", f"in state {state.value}")

    def _go_standby(self, now: float, *, mine: bool, rsc: Rsc) -> None:
        """Release (`mine`: this node hands over) or acquire the groups of a hand-off."""
        if mine:
            self.peer_stable = False
            self.hold &= ~rsc
            self._send_held(False, "standby")
            self._line(now, f"give up {rsc.wire} groups", f"{self.peer} takes them (hand-off)")
            self._work.append(_Work("release", rsc, "done"))
        else:
            ours = rsc.flipped()
            self._line(now, f"take {ours.wire} groups", f"{self.peer} released them")
            self._work.append(_Work("acquire", ours, "done"))
        self.local_state(now, self._running, self._started, self._stopped)

    def _send_held(self, stable: bool, comment: str | None) -> None:
        fields = [
            ("rsc_hold", self.hold.wire),
            ("rtype", "full"),
            ("isstable", "1" if stable else "0"),
        ]
        if comment is not None:
            fields.append(("info", comment))
        self._out.append(HbMessage("resource", tuple(fields)))

    def _send(self, mtype: str, **fields: str) -> None:
        self._out.append(HbMessage(mtype, tuple(fields.items())))

    def _line(self, now: float, decision: str, reason: str) -> None:
        self.decisions.append(HbDecision(now, decision, reason))
