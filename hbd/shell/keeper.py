"""The group keeper: the I/O side of resource groups, fencing and the watchdog.

It carries out what the core decides. Each loop turn the daemon calls `turn(now, ...)`:
the keeper pets the watchdog when `Fencing` says so, feeds the policy the membership view,
the peers' adverts, the witnesses and its own groups' state, runs the resource agents the
resource manager asks for (as asyncio tasks, never blocking the loop), probes the service
addresses of groups it does not hold, and hands the engine this node's advert.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hbd.config.model import Config, PingGroup
from hbd.core import resources as rs
from hbd.core.advert import decode_advert
from hbd.core.engine import Engine
from hbd.core.fencing import Fenced, Fencing
from hbd.core.model import AgentKind
from hbd.core.policy import (
    Acquire,
    Decision,
    GroupInfo,
    LocalGroup,
    PeerView,
    Policy,
    Release,
    SelfFence,
)
from hbd.core.states import NodeState
from hbd.core.witness import Witnesses
from hbd.effects.agents import Runner, carry_out
from hbd.effects.systemd import journal_fields
from hbd.effects.watchdog import WatchdogDevice, default_timeout, magic_close_warning
from hbd.links.ping import PingLink

log = logging.getLogger("hbd")

SHUTDOWN_LIMIT = 300.0  # seconds a clean stop waits for the groups to stop


@dataclass(frozen=True, slots=True)
class WatchdogInfo:
    device: str
    timeout: int
    magic_close: bool


def service_addresses(config: Config) -> dict[str, tuple[str, ...]]:
    """Each group's service addresses: the IPaddr/IPaddr2/IPv6addr resources' addresses
    (a link-local IPv6 one as `fe80::5%eth0`, the interface its argument names)."""
    out: dict[str, tuple[str, ...]] = {}
    for g in config.groups:
        addrs = []
        for r in g.resources:
            if r.name in ("IPaddr", "IPaddr2", "IPv6addr") and r.agent is AgentKind.BUILTIN:
                address, *rest = r.args[0].split("/")
                if address.lower().startswith("fe80:") and len(rest) > 1:
                    address = f"{address}%{rest[1]}"
                addrs.append(address)
        out[g.name] = tuple(addrs)
    return out


def address_probes(name: str, addresses: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """The pings that probe a group's service addresses: one per address family (a raw
    ICMP socket or an ICMPv6 one), keyed by the group name, `NAME ipv6` for the second."""
    v4 = tuple(a for a in addresses if ":" not in a)
    v6 = tuple(a for a in addresses if ":" in a)
    probes = {}
    if v4:
        probes[name] = v4
    if v6:
        probes[f"{name} ipv6" if v4 else name] = v6
    return probes


class GroupKeeper:
    """Resource groups, the policy, service probes, fencing and the watchdog of one node."""

    def __init__(
        self,
        config: Config,
        *,
        runner: Runner,
        watchdog: WatchdogDevice | None,
        spawn: Callable[[asyncio.Future[Any]], None],
        now: float,
    ) -> None:
        hacf = config.hacf
        self.config = config
        self.node = config.node_name
        self.runner = runner
        self.device = watchdog
        self._spawn = spawn
        self.watchdog: WatchdogInfo | None = None
        timeout: float | None = None
        if watchdog is not None:
            wanted = int(hacf.watchdog_timeout or default_timeout(hacf.deadtime))
            got = watchdog.set_timeout(wanted)
            support = watchdog.get_support()
            self.watchdog = WatchdogInfo(watchdog.path, got, watchdog.magic_close_works)
            timeout = float(got)
            log.info("watchdog %s armed: timeout %d s (%s)", watchdog.path, got, support.identity)
            warning = magic_close_warning(watchdog.path, support)
            if warning is not None or not watchdog.magic_close_works:
                log.warning(
                    "%s",
                    warning
                    or f"watchdog {watchdog.path}: magic close does not work (nowayout): "
                    "a clean stop of hbd will reset this machine",
                )
            if got < hacf.deadtime:
                log.warning(
                    "watchdog timeout %d s is shorter than deadtime %g s", got, hacf.deadtime
                )
        self.fencing = Fencing(
            timeout, stall_bound=max(hacf.deadtime - hacf.keepalive, hacf.keepalive), now=now
        )
        timeouts = rs.Timeouts(
            start=hacf.resource_timeout_start,
            stop=hacf.resource_timeout_stop,
            status=hacf.resource_timeout_status,
        )
        self.rm = rs.ResourceManager(
            config.groups, self.node, timeouts=timeouts, watchdog_armed=watchdog is not None
        )
        addresses = service_addresses(config)
        self.policy = Policy(
            self.node,
            hacf.nodes,
            tuple(GroupInfo(g.name, g.preferred, addresses[g.name]) for g in config.groups),
            hacf.auto_failback,
            watchdog_armed=watchdog is not None,
            has_witnesses=bool(hacf.ping_nodes or hacf.ping_groups),
            probe_window=hacf.deadtime,
            now=now,
        )
        self.probes: dict[str, PingLink] = {}
        self._probe_group: dict[str, str] = {}  # probe key -> group
        for g in config.groups:
            for key, family in address_probes(g.name, addresses[g.name]).items():
                probe = PingLink(PingGroup(g.name, family, g.source))
                probe.open(now)
                self.probes[key] = probe
                self._probe_group[key] = g.name
        self._answered: dict[str, float | None] = dict.fromkeys(addresses)
        self._failed: set[str] = set()
        self._logged: set[Decision] = set()
        self._stopping_since: float | None = None
        if config.groups:
            self.rm.probe_all(now)
            self._drain_rm(now)

    @property
    def active(self) -> bool:
        """Whether this node manages groups at all (an advert is only sent then)."""
        return bool(self.config.groups)

    # -- the loop turn ------------------------------------------------------------------

    def turn(self, now: float, engine: Engine, witnesses: Witnesses | None) -> None:
        pet, stalled = self.fencing.turn(now)
        if stalled is not None:
            self._fenced(stalled, now)
        if pet and self.device is not None:
            self.device.pet()
        if not self.active:
            return
        t = self.rm.get_timer()
        if t is not None and t <= now:
            self.rm.handle_timer(now)
        self._drain_rm(now)
        peers = tuple(
            PeerView(
                n.name,
                alive=n.state in (NodeState.UP, NodeState.ACTIVE),
                known=n.state is not NodeState.INIT,
                last_heard=n.last_heard,
                watchdog=n.watchdog,
                deadtime=n.deadtime,
            )
            for n in engine.nodes_status(now)
            if n.name != self.node
        )
        adverts = {}
        last_words = {}
        for p in peers:
            raw = engine.advert_of(p.name)
            advert = decode_advert(raw) if raw is not None else None
            if advert is not None:
                adverts[p.name] = advert
            raw = engine.last_advert_of(p.name)
            last = decode_advert(raw) if raw is not None else None
            if last is not None:
                last_words[p.name] = last
        local = {
            g.name: LocalGroup(
                self.rm.may_be_running(g.name),
                g.name in self._failed,
                self.rm.state(g.name) is rs.GroupState.STARTED,
            )
            for g in self.config.groups
        }
        self.policy.update(
            now,
            peers=peers,
            adverts=adverts,
            witness_up=witnesses.any_up() if witnesses is not None else True,
            local=local,
            probes=self._answered,
            last_words=last_words,
        )
        while (action := self.policy.next_action()) is not None:
            if isinstance(action, Acquire):
                log.info(
                    "Acquiring resource group: %s (%s)",
                    action.group,
                    action.reason,
                    extra=journal_fields(group=action.group),
                )
                self.rm.acquire(action.group, now)
            elif isinstance(action, Release):
                log.info(
                    "Releasing resource group: %s (%s)",
                    action.group,
                    action.reason,
                    extra=journal_fields(group=action.group),
                )
                self.rm.release(action.group, now)
            elif isinstance(action, SelfFence):
                fenced = self.fencing.fence(now, action.reason)
                if fenced is not None:
                    self._log_fence(fenced)
        self._drain_rm(now)
        self._log_decisions()
        engine.set_advert(self.policy.advert().encode(), now)

    def probe(self, now: float) -> None:
        """Send one echo to the service addresses of every group not held here."""
        for key, probe in self.probes.items():
            if not self.rm.may_be_running(self._probe_group[key]):
                probe.send_echo(now)

    def probe_answered(self, probe: str, now: float) -> None:
        """The probe `probe` (a key of `probes`) had an answer: its group's address lives."""
        self._answered[self._probe_group.get(probe, probe)] = now

    def get_timer(self) -> float | None:
        times = [t for t in (self.fencing.get_timer(), self.rm.get_timer()) if t is not None]
        if self.active:
            t = self.policy.get_timer()
            if t is not None:
                times.append(t)
        return min(times, default=None)

    # -- operator commands ----------------------------------------------------------------

    def standby(self, mode: str, now: float) -> None:
        self.policy.standby(mode, now)
        if mode in ("off", "none"):
            self._failed.clear()

    def takeover(self, mode: str, now: float) -> None:
        self.policy.takeover(mode, now)
        self._failed.clear()

    # -- stopping -------------------------------------------------------------------------

    def begin_stop(self, now: float) -> None:
        """A clean stop: hand every group over (standby all) before the daemon exits."""
        if self._stopping_since is None:
            self._stopping_since = now
            if self.active:
                self.policy.standby("all", now)

    def stopped(self, now: float) -> bool:
        """True once every group is stopped here and a live peer has taken it over (or
        there is none to take it, or the hand-over waited `2 x deadtime`)."""
        if not self.active:
            return True
        since = self._stopping_since if self._stopping_since is not None else now
        if not all(self.rm.is_stopped(g.name) for g in self.config.groups):
            if now - since > SHUTDOWN_LIMIT:
                log.critical("groups still not stopped after %.0f s; exiting anyway", now - since)
                return True
            return False
        adverts = self.policy.peer_adverts()
        if not adverts or now - since > 2 * self.config.hacf.deadtime:
            return True  # nobody to hand over to, or nobody took them in time
        return all(
            any(a.running[i] for a in adverts.values()) for i in range(len(self.config.groups))
        )

    def close(self, clean: bool) -> None:
        for probe in self.probes.values():
            probe.close()
        if self.device is None:
            return
        if clean and self.fencing.fenced is None:
            self.device.disarm()
            log.info("watchdog %s disarmed (magic close)", self.device.path)
        else:
            self.device.close_armed()
            log.warning("watchdog %s left armed: this node will be reset", self.device.path)

    # -- status ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        holders: dict[str, str | None] = {}
        for g in self.config.groups:
            holders[g.name] = self.node if self.rm.may_be_running(g.name) else None
        for name, advert in self.policy.peer_adverts().items():
            for i, g in enumerate(self.config.groups):
                if advert.running[i] and holders[g.name] is None:
                    holders[g.name] = name
        return {
            "groups": self.rm.snapshot(holders),
            "decisions": [
                {"at": round(d.at, 3), "decision": d.decision, "reason": d.reason}
                for d in list(self.policy.decisions)[-10:]
            ],
            "targets": self.policy.targets() if self.active else {},
            "survivor": self.policy.survivor() if self.active else None,
            "watchdog": None
            if self.watchdog is None
            else {
                "device": self.watchdog.device,
                "timeout_s": self.watchdog.timeout,
                "magic_close": self.watchdog.magic_close,
            },
            "fenced": None if self.fencing.fenced is None else self.fencing.fenced.reason,
        }

    # -- internals ------------------------------------------------------------------------

    def _fenced(self, fenced: Fenced, now: float) -> None:
        self._log_fence(fenced)
        self.policy.fenced_elsewhere(now, fenced.reason)

    def _log_fence(self, fenced: Fenced) -> None:
        if self.device is not None:
            log.critical(
                "self-fencing: %s; no longer petting %s, reset within %d s",
                fenced.reason,
                self.device.path,
                self.watchdog.timeout if self.watchdog else 0,
            )
        else:
            log.critical("would self-fence (%s) but no watchdog is configured", fenced.reason)

    def _drain_rm(self, now: float) -> None:
        while (action := self.rm.next_action()) is not None:
            if isinstance(action, rs.RunAgent):
                self._spawn(asyncio.ensure_future(self._run(action)))
            elif isinstance(action, rs.SelfFence):
                fenced = self.fencing.fence(now, action.reason)
                if fenced is not None:
                    self._fenced(fenced, now)
        while (event := self.rm.next_event()) is not None:
            self._log_rm_event(event)
            if isinstance(event, rs.GroupStarted | rs.GroupStopped | rs.GroupFailed):
                self.policy.settled(event.group)
            if isinstance(event, rs.GroupFailed) and not event.may_be_running:
                self._failed.add(event.group)

    async def _run(self, action: rs.RunAgent) -> None:
        await carry_out(self.runner, self.rm, action)
        self._drain_rm(time.monotonic())

    def _log_rm_event(self, event: object) -> None:
        if isinstance(event, rs.GroupStarted):
            log.info(
                "resource group %s started", event.group, extra=journal_fields(group=event.group)
            )
        elif isinstance(event, rs.GroupStopped):
            log.info(
                "resource group %s stopped", event.group, extra=journal_fields(group=event.group)
            )
        elif isinstance(event, rs.GroupFailed):
            log.error(
                "resource group %s failed: %s",
                event.group,
                event.reason,
                extra=journal_fields(group=event.group),
            )
        elif isinstance(event, rs.ResourceFailed):
            log.error("resource %s %s failed: %s", event.resource, event.op, event.reason)
        elif isinstance(event, rs.ResourceStuck):
            log.critical("%s", event)
        elif isinstance(event, rs.StopRetrying | rs.ResourceWarning):
            log.warning("%s", event)
        else:
            log.debug("%s", event)

    def _log_decisions(self) -> None:
        current = list(self.policy.decisions)
        for d in current:
            if d not in self._logged:
                log.info("policy: %s (%s)", d.decision, d.reason)
        self._logged = set(current)
