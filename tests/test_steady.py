"""The steady short way (`Engine._receive_steady`): a native heartbeat that changes nothing
but freshness is taken without the whole decode and membership's every question.

It must be invisible: whole simulated runs, faults and all, give the same events, facts and
invariant checks with it and without it; an idle cluster must actually take it (else the
comparison proves nothing); and what the whole way drops or reports -- a replay, a forgery,
a late heartbeat, a peer changing state -- is still dropped or reported.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hbd.core.engine import Engine, PathKind
from hbd.core.errors import DropReason
from hbd.core.events import DuplicateNode, FrameDropped, LateHeartbeat, NodeDead, PathUp
from hbd.core.membership import Beat, Membership
from hbd.core.model import WireFormat
from hbd.core.wire import heartbeat as hb
from hbd.testing.explore import Run, draw
from hbd.testing.sim import SimCluster

# the first seeds whose drawn cluster speaks native frames (the whole short way is for
# those), and the first that speak Heartbeat's (membership's short way is for both)
SEEDS = [
    *[s for s in range(1, 400) if draw(s).cluster.wire == "hbd"][:24],
    *[s for s in range(1, 400) if draw(s).cluster.wire == "heartbeat"][:12],
]


def _whole_run(seed: int) -> tuple[Any, ...]:
    run = Run(draw(seed))
    run.sim.record_events = True
    result = run.run()
    events = {n: [(t, repr(e)) for t, e in run.sim.events(n)] for n in run.sim.nodes}
    violations = [(v.invariant, v.at, v.detail) for v in result.violations]
    return events, list(run.sim.log), violations, dict(result.checks), result.residual


@pytest.mark.parametrize("seed", SEEDS)
def test_a_whole_faulty_run_is_the_same_event_for_event_with_and_without_the_short_way(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    short = _whole_run(seed)
    monkeypatch.setattr(Engine, "TAKE_STEADY", False)
    whole = _whole_run(seed)
    assert short[0] == whole[0]  # every event of every node, at the same instant
    assert short[1:] == whole[1:]  # the simulator's facts, violations, checks


# beta starts with 01..., gamma with 02...; 03... is alpha's own
UUIDS = (None, b"\x01" * 16, b"\x02" * 16, b"\x03" * 16, b"\x04" * 16)
PEERS, PATHS = ("beta", "gamma"), ("serial:/dev/ttyS0", "bcast:eth0")
SOURCES = (None, "10.0.0.2", "10.0.0.9")
CHANGES = st.one_of(
    st.tuples(st.just("generation"), st.sampled_from((6, 7, 8))),
    st.tuples(st.just("status"), st.sampled_from(("active", "up", "init"))),
    st.tuples(st.just("uuid"), st.sampled_from(UUIDS)),
    st.tuples(st.just("deadtime"), st.sampled_from((None, 10.0, 4.0))),
    st.tuples(st.just("watchdog"), st.sampled_from((None, 12.0, 20.0))),
    st.tuples(st.just("source"), st.sampled_from(SOURCES)),
    st.tuples(st.just("source"), st.sampled_from(SOURCES)),
    st.tuples(st.just("seq"), st.integers(-70, 3)),  # a jump back (a replay) or ahead
)
# a step: which peer, on which path, after how long, and what changed since its last
# heartbeat (None: nothing, the next sequence; "copy": the same message again; "change":
# the field change drawn beside it; "leave": it said goodbye, then this heartbeat)
steps = st.tuples(
    st.sampled_from(PEERS),
    st.sampled_from(PATHS),
    st.sampled_from((0.001, *[0.2] * 4, *[1.0] * 8, 4.0, 11.0)),
    st.sampled_from((None, None, None, None, None, None, "copy", "copy", "change", "leave")),
    CHANGES,
)


def _membership() -> Membership:
    return Membership(
        "alpha",
        ("alpha", *PEERS),
        PATHS,
        keepalive=1.0,
        deadtime=10.0,
        warntime=3.0,
        initdead=20.0,
        now=0.0,
        local_uuid=b"\x03" * 16,
    )


@settings(max_examples=500, deadline=None)
@given(st.lists(steps, min_size=20, max_size=60))
def test_whatever_membership_takes_the_short_way_the_whole_way_takes_alike(
    script: list[tuple[str, str, float, str | None, tuple[str, Any]]],
) -> None:
    """Two memberships fed the same heartbeats (each peer's next one, a copy, or one
    with a field changed: generation, status, uuid -- alpha's own among them --,
    timings, source, a sequence jump), one asking `receive_steady` first: the same
    verdicts, events, status, clashes and timer, at every step."""
    _compare(script)


NEXT: tuple[str, Any] = ("seq", 0)  # a filler: a step that changes nothing


def test_a_peer_back_on_a_uuid_it_had_is_not_steady_until_heard_the_whole_way() -> None:
    beta = ("beta", PATHS[1], 0.2)
    _compare(
        [
            (*beta, None, NEXT),
            (*beta, None, NEXT),
            (*beta, "change", ("uuid", b"\x04" * 16)),  # beta's uuid 01... -> 04...
            (*beta, None, NEXT),
            (*beta, "change", ("uuid", b"\x01" * 16)),  # and back: both are beta's now
            (*beta, None, NEXT),
        ]
    )


def test_a_source_that_goes_back_within_deadtime_is_not_steady() -> None:
    beta = ("beta", PATHS[1], 0.2)
    _compare(
        [
            (*beta, None, NEXT),
            (*beta, None, NEXT),
            (*beta, "change", ("source", "10.0.0.9")),
            (*beta, "change", ("source", "10.0.0.2")),  # two senders in turn
            (*beta, None, NEXT),
        ]
    )


def _compare(script: list[tuple[str, str, float, str | None, tuple[str, Any]]]) -> None:
    short, whole = _membership(), _membership()
    now = 0.0
    last = {  # beta's uuid is 01..., gamma's 02...
        peer: Beat(peer, PATHS[0], 7, 0, "active", bytes([i + 1]) * 16, 10.0, 12.0, "10.0.0.2")
        for i, peer in enumerate(PEERS)
    }
    for peer, path, gap, what, (field, value) in script:
        now += gap
        beat = dataclasses.replace(last[peer], path=path)
        if what in (None, "leave"):
            beat = dataclasses.replace(beat, seq=beat.seq + 1)
        elif what == "change":  # the next message, changed (or a jump in sequence)
            seq = max(1, beat.seq + value) if field == "seq" else beat.seq + 1
            beat = dataclasses.replace(beat, seq=seq)
            if field != "seq":
                beat = dataclasses.replace(beat, **{field: value})
        last[peer] = beat
        for m in (short, whole):
            m.handle_timer(now)
            if what == "leave":
                m.leave(peer, now)
        got = short.receive_steady(
            beat.node,
            beat.path,
            beat.generation,
            beat.seq,
            beat.status or "",
            beat.deadtime,
            beat.watchdog,
            beat.source,
            now,
            uuid=beat.uuid,
        )
        if got is None:
            got = short.receive(beat, now)
        assert got == whole.receive(beat, now)
        assert list(iter(short.next_event, None)) == list(iter(whole.next_event, None))
        assert short.status(now) == whole.status(now)
        assert short.uuid_clashes() == whole.uuid_clashes()
        assert short.get_timer() == whole.get_timer()


def _counting(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    counts = {"whole": 0, "steady": 0}
    receive, steady = Membership.receive, Membership.receive_steady

    def whole_way(self: Membership, *args: Any) -> Any:
        counts["whole"] += 1
        return receive(self, *args)

    def short_way(self: Membership, *args: Any, **kwargs: Any) -> Any:
        got = steady(self, *args, **kwargs)
        counts["steady"] += got is not None
        return got

    monkeypatch.setattr(Membership, "receive", whole_way)
    monkeypatch.setattr(Membership, "receive_steady", short_way)
    return counts


def idle_cluster() -> SimCluster:
    sim = SimCluster(keepalive=0.2, deadtime=1.0, groups=[("alpha", ["IPaddr::10.1.0.100"])])
    sim.run_for(10)
    return sim


def test_an_idle_cluster_takes_nearly_every_heartbeat_the_short_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim = idle_cluster()
    counts = _counting(monkeypatch)
    sim.run_for(30)
    # adverts, echoes and their answers go the whole way; heartbeats on every path do not
    assert counts["steady"] > 9 * counts["whole"]
    assert counts["steady"] >= 2 * 30 * 5 * 3 * 0.95  # two nodes, 5 Hz, three paths


def test_an_idle_heartbeat_wire_cluster_takes_membership_s_short_way_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim = SimCluster(keepalive=0.2, deadtime=1.0, wire=WireFormat.HEARTBEAT)
    sim.run_for(10)
    counts = _counting(monkeypatch)
    sim.run_for(30)
    assert counts["steady"] > 9 * counts["whole"]
    assert counts["steady"] >= 2 * 30 * 5 * 3 * 0.95


def test_three_heartbeat_wire_nodes_on_shared_paths_read_each_peer_by_its_own_template(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # two senders' heartbeats on every broadcast path: each has its template, and a peer's
    # heartbeat is read by it nearly every beat (the first copy; the other is known bytes)
    paths = (("bcast:eth0", PathKind.DATAGRAM), ("bcast:eth1", PathKind.DATAGRAM))
    sim = SimCluster(
        ("alpha", "beta", "gamma"), paths, keepalive=0.2, deadtime=1.0, wire=WireFormat.HEARTBEAT
    )
    sim.run_for(10)
    reads = {"template": 0, "whole": 0}
    read, whole = hb.NetstringTemplate.read, hb.decode_frame

    def by_template(self: hb.NetstringTemplate, data: bytes, keys: Any) -> Any:
        got = read(self, data, keys)
        reads["template"] += got is not None
        return got

    def whole_way(data: bytes, keys: Any) -> Any:
        got = whole(data, keys)
        if data.startswith(hb.NETSTRING_START) and isinstance(got, hb.HaMessage):
            reads["whole"] += got.get("t") == "status"  # acks and probes go this way
        return got

    monkeypatch.setattr(hb.NetstringTemplate, "read", by_template)
    monkeypatch.setattr(hb, "decode_frame", whole_way)
    sim.run_for(30)
    beats = 3 * 2 * 30 * 5  # each node hears two peers at 5 Hz
    assert reads["template"] >= beats * 0.95, reads
    assert reads["whole"] < beats * 0.05, reads


def _steady_frame(sim: SimCluster, path: str, seconds: float = 1.0) -> bytes:
    """A heartbeat beta just sent alpha on `path` (a datagram path), which alpha took
    unless the path is cut."""
    sim.record_sent = True
    sim.run_for(seconds)
    sim.record_sent = False
    sent = [s for s in sim.sent if s.node == "beta" and s.path == path and len(s.data) == 48]
    assert sent, "beta sent no heartbeat with one ack on " + path
    return sent[-1].data


def _dropped(sim: SimCluster, since: float) -> list[DropReason]:
    return [e.reason for t, e in sim.events_of("alpha", FrameDropped) if t >= since]


def test_a_steady_heartbeat_replayed_on_its_path_is_dropped_as_a_replay() -> None:
    sim = idle_cluster()
    frame = _steady_frame(sim, "bcast:eth0")
    since = sim.clock.now
    sim.inject("alpha", "bcast:eth0", frame, sim.node_address("beta", "eth0"))
    assert _dropped(sim, since) == [DropReason.REPLAYED]


def test_a_steady_heartbeat_with_a_forged_tag_is_dropped_as_a_forgery() -> None:
    sim = idle_cluster()
    frame = bytearray(_steady_frame(sim, "bcast:eth0"))
    frame[19] += 1  # the next sequence number, which the tag does not sign
    since = sim.clock.now
    sim.inject("alpha", "bcast:eth0", bytes(frame), sim.node_address("beta", "eth0"))
    assert _dropped(sim, since) == [DropReason.BAD_SIGNATURE]


def test_a_heartbeat_from_a_second_address_in_turn_is_still_two_claimants() -> None:
    """beta's next heartbeat on bcast:eth0 (kept from alpha by a one-way cut) comes from
    another address, then beta's own come again: two senders under one name, in turn."""
    sim = idle_cluster()
    sim.cut("bcast:eth0", "beta", "alpha", both=False)
    frame = _steady_frame(sim, "bcast:eth0", 0.3)  # sent, never delivered
    since = sim.clock.now
    sim.inject("alpha", "bcast:eth0", frame, "10.1.0.77")
    sim.heal("bcast:eth0", "beta", "alpha", both=False)
    sim.run_for(0.5)  # within deadtime of beta's own address last heard there
    assert [e.node for t, e in sim.events_of("alpha", DuplicateNode) if t >= since] == ["beta"]


def test_a_late_heartbeat_is_still_reported_and_a_silent_peer_still_dies() -> None:
    sim = SimCluster(keepalive=0.2, deadtime=2.0, warntime=0.5)
    sim.run_for(10)
    sim.stall("beta", 0.8)  # past warntime, short of deadtime
    sim.run_for(3)
    assert [e.node for _, e in sim.events_of("alpha", LateHeartbeat)] == ["beta"]
    assert sim.events_of("alpha", NodeDead) == []
    since = sim.clock.now
    sim.isolate("beta")
    sim.run_for(3)
    assert [e.node for t, e in sim.events_of("alpha", NodeDead) if t >= since] == ["beta"]
    sim.heal_all()
    sim.run_for(3)
    assert {e.path for t, e in sim.events_of("alpha", PathUp) if t >= since} == {
        "serial:/dev/ttyS0",
        "bcast:eth0",
        "bcast:eth1",
    }
