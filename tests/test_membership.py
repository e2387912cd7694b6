"""Membership scenarios: time is jumped, never slept."""

from __future__ import annotations

import pytest

from hbd.core.errors import DropReason, LocalProtocolError
from hbd.core.events import (
    DeadtimeDiffers,
    DuplicateNode,
    Event,
    LateHeartbeat,
    NodeActive,
    NodeDead,
    NodeRestarted,
    NodeUp,
    PathDown,
    PathUp,
    UuidClash,
)
from hbd.core.membership import Beat, Membership
from hbd.core.states import NodeState, PathState
from hbd.core.wire import Dropped

PATHS = ("serial:/dev/ttyS0", "bcast:eth0", "bcast:eth1")


def make(local_uuid: bytes | None = None) -> Membership:
    return Membership(
        "alpha",
        ("alpha", "beta"),
        PATHS,
        keepalive=1.0,
        deadtime=10.0,
        warntime=3.0,
        initdead=20.0,
        now=0.0,
        local_uuid=local_uuid,
    )


def drain(m: Membership) -> list[Event]:
    out = []
    while (e := m.next_event()) is not None:
        out.append(e)
    return out


def beat(seq: int, path: str = "bcast:eth0", **kw: object) -> Beat:
    fields: dict[str, object] = {"generation": 7, "status": "active", "uuid": b"\x01" * 16}
    fields.update(kw)
    return Beat("beta", path, seq=seq, **fields)  # type: ignore[arg-type]


def test_first_contact_reports_node_up_active_and_the_path() -> None:
    m = make()
    assert m.receive(beat(1), 0.5) is True
    assert drain(m) == [
        PathUp("beta", "bcast:eth0"),
        NodeUp("beta", "active", 7, "bcast:eth0"),
        NodeActive("beta"),
    ]
    assert m.node_state("beta") is NodeState.ACTIVE
    assert m.path_state("beta", "bcast:eth0") is PathState.UP
    assert m.path_state("beta", "bcast:eth1") is PathState.INIT


def test_initdead_before_first_contact() -> None:
    m = make()
    assert m.get_timer() == 20.0
    m.handle_timer(19.999)
    assert drain(m) == []
    m.handle_timer(20.0)
    assert drain(m) == [NodeDead("beta", None, 20.0)]
    assert m.path_state("beta", "serial:/dev/ttyS0") is PathState.DEAD
    assert m.get_timer() is None


def test_node_dead_only_when_every_path_silent_for_deadtime() -> None:
    m = make()
    t = 0.0
    for seq in range(1, 6):
        t = float(seq)
        for p in PATHS:
            m.receive(beat(seq, p), t)
    drain(m)
    # eth1 goes quiet; the other two keep going
    for seq in range(6, 30):
        t = float(seq)
        m.receive(beat(seq, "serial:/dev/ttyS0"), t)
        m.receive(beat(seq, "bcast:eth0"), t)
        while (d := m.get_timer()) is not None and d <= t:
            m.handle_timer(d)
    events = drain(m)
    assert events == [PathDown("beta", "bcast:eth1", 10.0, False)]
    assert m.node_state("beta") is NodeState.ACTIVE
    # now everything stops: the node dies exactly deadtime after its last frame
    last = t
    assert m.get_timer() == last + 10.0
    while (d := m.get_timer()) is not None:
        m.handle_timer(d)
    events = drain(m)
    assert events[-1] == NodeDead("beta", last, 10.0)
    assert {e.path for e in events if isinstance(e, PathDown)} == {
        "serial:/dev/ttyS0",
        "bcast:eth0",
    }


def test_advertised_deadtime_is_used() -> None:
    m = make()
    m.receive(beat(1, deadtime=4.0), 1.0)
    assert m.get_timer() == 5.0
    m.handle_timer(5.0)
    assert NodeDead("beta", 1.0, 4.0) in drain(m)


def test_a_deadtime_other_than_ours_is_reported_once_and_again_when_it_changes() -> None:
    m = make()  # deadtime 10 s
    m.receive(beat(1, deadtime=4.0), 1.0)
    m.receive(beat(2, deadtime=4.0), 2.0)
    m.receive(beat(3, deadtime=10.0), 3.0)  # made equal: nothing to report
    m.receive(beat(4, deadtime=6.0), 4.0)
    reported = [e for e in drain(m) if isinstance(e, DeadtimeDiffers)]
    assert reported == [DeadtimeDiffers("beta", 4.0, 10.0), DeadtimeDiffers("beta", 6.0, 10.0)]


def test_one_heartbeat_on_three_paths_counts_once_refreshes_all() -> None:
    m = make()
    assert [m.receive(beat(1, p), 1.0) for p in PATHS] == [True, False, False]
    drain(m)
    for p in PATHS:
        assert m.receive(beat(2, p), 2.0 + 0.01 * PATHS.index(p)) is (p == PATHS[0])
    status = m.node_status("beta", 2.5)
    assert status.last_heard == 2.0  # the node was refreshed by the first copy
    assert [p.last_heard for p in status.paths] == [2.0, 2.01, 2.02]
    assert all(p.received == 2 and p.lost == 0 for p in status.paths)


def test_same_copy_twice_on_one_path_is_a_replay() -> None:
    m = make()
    m.receive(beat(1), 1.0)
    got = m.receive(beat(1), 1.5)
    assert isinstance(got, Dropped) and got.reason is DropReason.REPLAYED


def test_late_heartbeat_reports_measured_interval() -> None:
    m = make()
    m.receive(beat(1), 1.0)
    m.receive(beat(2), 2.0)
    drain(m)
    m.receive(beat(3, "serial:/dev/ttyS0"), 5.52)
    assert drain(m)[-1] == LateHeartbeat("beta", "serial:/dev/ttyS0", 3520)


def test_new_generation_is_a_restart() -> None:
    m = make()
    m.receive(beat(100), 1.0)
    drain(m)
    m.receive(beat(1, generation=8, status="up"), 2.0)
    assert drain(m) == [NodeRestarted("beta", 7, 8)]
    assert m.node_state("beta") is NodeState.UP
    stale = m.receive(beat(101), 2.5)
    assert isinstance(stale, Dropped) and stale.reason is DropReason.STALE


def test_old_generation_still_counting_is_a_duplicate() -> None:
    m = make()
    m.receive(beat(100), 1.0)
    m.receive(beat(1, generation=8), 1.1)
    drain(m)
    assert isinstance(m.receive(beat(110), 1.2), Dropped)
    (dup,) = drain(m)
    assert isinstance(dup, DuplicateNode) and "generation 7 still sending" in dup.detail


def test_one_uuid_under_two_names_names_both() -> None:
    m = Membership(
        "alpha",
        ("alpha", "beta", "gamma"),
        PATHS,
        keepalive=1,
        deadtime=10,
        warntime=3,
        initdead=20,
        now=0.0,
    )
    m.receive(Beat("beta", "bcast:eth0", 1, 1, "active", b"\x05" * 16, source="10.0.0.2"), 1.0)
    m.receive(Beat("gamma", "bcast:eth0", 1, 1, "active", b"\x05" * 16, source="10.0.0.3"), 1.0)
    dups = [e for e in drain(m) if isinstance(e, DuplicateNode)]
    assert len(dups) == 1
    assert "beta" in dups[0].first and "10.0.0.2" in dups[0].first
    assert "gamma" in dups[0].second and "10.0.0.3" in dups[0].second


def test_one_name_from_two_addresses_in_turn_is_a_duplicate() -> None:
    m = make()
    m.receive(beat(1, source="10.0.0.2"), 1.0)
    m.receive(beat(2, source="10.0.0.9"), 1.2)
    assert not [e for e in drain(m) if isinstance(e, DuplicateNode)]  # one change: one host
    m.receive(beat(3, source="10.0.0.2"), 1.4)
    m.receive(beat(4, source="10.0.0.9"), 1.6)
    dups = [e for e in drain(m) if isinstance(e, DuplicateNode)]
    assert len(dups) == 1 and "10.0.0.9" in dups[0].first and "10.0.0.2" in dups[0].second
    assert "in turn" in dups[0].detail


def test_a_peer_whose_source_address_changes_is_no_duplicate() -> None:
    """IPv6 source selection changes a host's source address as its addresses come and go:
    the global one while the link-local one is tentative, then the link-local one (a
    link-scope group), the newest address of a prefix once a service address is added.
    Each is one change; none flips back within a deadtime (seen in every IPv6 run, which
    logged "a cloned machine?")."""
    m = make()
    t = 1.0
    for seq, source in enumerate(["fd94::1"] * 3 + ["fe80::1"] * 3 + ["fd94::100"] * 3, 1):
        m.receive(beat(seq, source=source), t)
        t += 0.2
    m.receive(beat(20, source="fe80::1"), t + 11.0)  # back, after a deadtime: the VIP left
    assert not [e for e in drain(m) if isinstance(e, DuplicateNode)]


def test_unknown_and_self_are_dropped_and_bad_path_raises() -> None:
    m = make()
    unknown = m.receive(Beat("mallory", "bcast:eth0", 1, 1), 1.0)
    assert isinstance(unknown, Dropped) and unknown.reason is DropReason.UNKNOWN_NODE
    me = m.receive(Beat("alpha", "bcast:eth0", 1, 1), 1.0)
    assert isinstance(me, Dropped) and me.reason is DropReason.FROM_SELF
    with pytest.raises(LocalProtocolError, match="nosuch"):
        m.receive(Beat("beta", "nosuch", 1, 1), 1.0)


def test_loss_and_interval_statistics_from_sequence_gaps() -> None:
    m = make()
    t = 0.0
    for seq in range(1, 401):
        t = seq * 1.0
        if seq % 4 != 0:  # every fourth frame lost on this path
            m.receive(beat(seq), t)
    (p,) = [p for p in m.node_status("beta", t).paths if p.path == "bcast:eth0"]
    assert p.lost == 99 and p.received == 300  # frame 400 is not yet known lost
    assert 0.15 < p.loss < 0.35
    assert p.mean_interval is not None and 1.0 < p.mean_interval < 1.7
    assert p.jitter > 0.1


def test_node_comes_back_after_death() -> None:
    m = make()
    m.receive(beat(1), 1.0)
    m.handle_timer(11.0)
    drain(m)
    assert m.node_state("beta") is NodeState.DEAD
    m.receive(beat(40), 50.0)
    assert drain(m) == [
        PathUp("beta", "bcast:eth0"),
        NodeUp("beta", "active", 7, "bcast:eth0"),
        NodeActive("beta"),
    ]


def test_a_peer_with_this_nodes_own_uuid_is_a_clone_until_it_has_its_own() -> None:
    # the seed guide's FAQ: /var/lib/heartbeat (or hbd's state directory) copied to beta
    m = make(local_uuid=b"\x01" * 16)  # beat() sends this uuid: beta is a clone
    m.receive(beat(1, source="10.0.0.2"), 1.0)
    m.receive(beat(2, source="10.0.0.2"), 2.0)
    clashes = [e for e in drain(m) if isinstance(e, UuidClash)]
    assert len(clashes) == 1 and not clashes[0].fixed  # reported once, not every frame
    assert "name=beta" in clashes[0].claimant and "10.0.0.2" in clashes[0].claimant
    assert list(m.uuid_clashes()) == ["beta"]
    m.receive(beat(1, generation=8, uuid=b"\x02" * 16, source="10.0.0.2"), 3.0)
    [fixed] = [e for e in drain(m) if isinstance(e, UuidClash)]
    assert fixed.fixed and m.uuid_clashes() == {}


def test_a_goodbye_belongs_to_the_generation_that_said_it() -> None:
    m = make()
    m.receive(beat(1), 1.0)
    m.leave("beta", 1.1)
    assert m.has_left("beta")
    m.receive(beat(1, generation=8), 5.0)  # started again
    assert not m.has_left("beta")
    m.handle_timer(20.0)  # and went silent: dead, not left
    assert m.node_state("beta") is NodeState.DEAD and not m.has_left("beta")
