"""An attacker on the LAN without the key (issue 15, "On the wire"): no forged death, no
amplification, no parse before the signature, no replays past a restart, no faked paths.

Each test is a scenario the review demonstrated; each failed before its fix."""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hbd.core import engine as engine_mod
from hbd.core.auth import AuthEntry, AuthKeys, AuthMethod
from hbd.core.engine import Engine, EngineSettings, PathKind
from hbd.core.errors import DropReason
from hbd.core.events import (
    Event,
    FrameDropped,
    GenerationWentBack,
    NodeDead,
    NodeLeft,
    NodeRestarted,
    NodeUp,
)
from hbd.core.model import WireFormat
from hbd.core.states import NodeState
from hbd.core.wire import ha_control as ctl
from hbd.core.wire import heartbeat as hb
from hbd.core.wire.native import cluster_id
from hbd.effects.peerstate import load_peer_generations, save_peer_generations

UDP, UDP2 = "bcast:eth0", "bcast:eth1"
SERIAL = "serial:/dev/ttyS0"
NODES = ("alpha", "beta")
CRC = AuthEntry(1, AuthMethod.CRC, b"")
SHA256 = AuthEntry(2, AuthMethod.SHA256, b"a-long-random-secret")
SHA1 = AuthEntry(2, AuthMethod.SHA1, b"a-long-random-secret")
# the review's authkeys: a leftover crc line beside the key in use
LEFTOVER_CRC = AuthKeys(SHA256, {1: CRC, 2: SHA256})
UUID = {"alpha": b"\x0a" * 16, "beta": b"\x0b" * 16}


def engine(
    node: str,
    keys: AuthKeys = LEFTOVER_CRC,
    wire: WireFormat = WireFormat.HBD,
    *,
    generation: int = 7,
    paths: tuple[tuple[str, PathKind], ...] = ((UDP, PathKind.DATAGRAM),),
    now: float = 0.0,
    **extra: object,
) -> Engine:
    settings = EngineSettings(
        node=node,
        uuid=UUID[node],
        generation=generation,
        nodes=NODES,
        paths=paths,
        auth=keys,
        keepalive=1.0,
        deadtime=10.0,
        warntime=5.0,
        initdead=20.0,
        wire=wire,
        cluster_id=cluster_id(NODES, 694),
        **extra,  # type: ignore[arg-type]
    )
    return Engine(settings, now=now)


def events(e: Engine) -> list[Event]:
    return list(iter(e.next_event, None))


def run(a: Engine, b: Engine, start: float, seconds: float, step: float = 0.5) -> float:
    """Both engines exchange everything they send for `seconds`; returns the new time."""
    now = start
    while now < start + seconds:
        now += step
        for x in (a, b):
            x.handle_timer(now)
        for src, dst in ((a, b), (b, a)):
            for path, data in src.frames_to_send(now):
                dst.receive_frame(path, data, now + 0.001, f"10.0.0.{1 + (src is b)}")
    return now


def forged_shutdone(src: str, generation: int, auth: AuthEntry, classic: bool = False) -> bytes:
    msg = ctl.shutdone_message(src, UUID[src], 1, generation, 0x6000_0000, ttl=3)
    return hb.encode_classic(msg, auth) if classic else hb.encode_netstring(msg, auth)


# -- 1. a leftover crc line -----------------------------------------------------------------


def test_a_crc_signed_shutdone_from_a_third_address_neither_kills_nor_outdates_a_live_peer() -> (
    None
):
    for wire in WireFormat:
        keys = LEFTOVER_CRC if wire is WireFormat.HBD else AuthKeys(SHA1, {1: CRC, 2: SHA1})
        alpha, beta = engine("alpha", keys, wire), engine("beta", keys, wire)
        now = run(alpha, beta, 0.0, 3.0)
        assert alpha.membership.node_state("beta") is NodeState.ACTIVE
        events(alpha)
        alpha.receive_frame(UDP, forged_shutdone("beta", 8, CRC), now, source="10.0.0.66")
        got = events(alpha)
        assert not [x for x in got if isinstance(x, NodeRestarted | NodeLeft | NodeDead)], wire
        (drop,) = [x for x in got if isinstance(x, FrameDropped)]
        assert drop.source == "10.0.0.66"
        # the real peer's frames are not made stale: it stays alive for good
        now = run(alpha, beta, now, 30.0)
        got = events(alpha)
        assert alpha.membership.node_state("beta") is NodeState.ACTIVE, wire
        assert not [x for x in got if isinstance(x, FrameDropped)], wire
        assert alpha.node_status("beta", now).generation == 7


def test_crc_frames_are_refused_whenever_a_keyed_entry_is_configured_naming_why() -> None:
    alpha = engine(
        "alpha", AuthKeys(SHA1, {1: CRC, 2: SHA1}, rotation=frozenset({1})), WireFormat.HEARTBEAT
    )
    alpha.receive_frame(UDP, forged_shutdone("beta", 8, CRC), 1.0, source="10.0.0.66")
    (drop,) = [x for x in events(alpha) if isinstance(x, FrameDropped)]
    assert drop.reason is DropReason.UNKNOWN_KEY
    assert "crc" in drop.detail and "never accepted" in drop.detail


def test_a_leftover_keyed_entry_is_refused_until_accept_keys_lists_it() -> None:
    old = AuthEntry(3, AuthMethod.MD5, b"the-old-key")
    keys = AuthKeys(SHA1, {2: SHA1, 3: old})
    sender = engine("beta", AuthKeys(old, {3: old}), WireFormat.HEARTBEAT)
    frames = [d for _, d in sender.frames_to_send(0.0)]
    alpha = engine("alpha", keys, WireFormat.HEARTBEAT)
    alpha.receive_frame(UDP, frames[0], 0.5, source="10.0.0.2")
    (drop,) = [x for x in events(alpha) if isinstance(x, FrameDropped)]
    assert drop.reason is DropReason.UNKNOWN_KEY
    assert "neither the active key (auth 2) nor listed in ha.cf's accept_keys" in drop.detail
    rotating = engine(
        "alpha", AuthKeys(SHA1, keys.entries, rotation=frozenset({3})), WireFormat.HEARTBEAT
    )
    rotating.receive_frame(UDP, frames[0], 0.5, source="10.0.0.2")
    assert not [x for x in events(rotating) if isinstance(x, FrameDropped)]
    assert rotating.membership.node_state("beta") is not NodeState.INIT


def test_wire_hbd_refuses_heartbeat_format_frames_unless_a_heartbeat_peer_is_declared() -> None:
    signer = AuthEntry(1, AuthMethod.SHA1, b"a-long-random-secret")
    keys = AuthKeys(SHA256, {1: signer, 2: SHA256}, rotation=frozenset({1}))
    status = ctl.status_message("beta", UUID["beta"], 1, 7, "up", 10000, 0x6000_0000)
    for classic in (False, True):
        data = hb.encode_classic(status, signer) if classic else hb.encode_netstring(status, signer)
        alpha = engine("alpha", keys)
        alpha.receive_frame(UDP, data, 1.0, source="10.0.0.2")
        (drop,) = [x for x in events(alpha) if isinstance(x, FrameDropped)]
        assert drop.reason is DropReason.UNSUPPORTED
        assert "wire_accept" in drop.detail
        mixed = engine("alpha", keys, accept_heartbeat=True)
        mixed.receive_frame(UDP, data, 1.0, source="10.0.0.2")
        assert not [x for x in events(mixed) if isinstance(x, FrameDropped)]


# -- 3. Heartbeat-format frames: the signature before the parser --------------------------


def _many_fields(count: int) -> hb.HaMessage:
    msg = ctl.status_message("beta", UUID["beta"], 1, 7, "up", 10000, 0x6000_0000)
    extra = tuple(hb.HaField(f"f{i}", "x") for i in range(count))
    return hb.HaMessage((*msg.fields, *extra))


def test_a_forged_64_kib_heartbeat_frame_is_refused_at_its_signature_without_parsing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wrong = AuthEntry(2, AuthMethod.SHA1, b"not-the-key")
    big = _many_fields(8200)
    classic = hb.encode_classic(big, wrong)
    net = hb.encode_netstring(_many_fields(4500), wrong, classic_auth=False)
    assert 60_000 < len(classic) <= hb.MAX_FRAME and 60_000 < len(net) <= hb.MAX_FRAME

    def no_parsing(*args: object, **kwargs: object) -> None:
        raise AssertionError("parsed before the signature was checked")

    monkeypatch.setattr(hb, "_parse_classic", no_parsing)
    monkeypatch.setattr(hb, "_parse_netstring", no_parsing)
    keys = AuthKeys(SHA1, {2: SHA1})
    for data in (classic, net):
        got = hb.decode_frame(data, keys)
        assert isinstance(got, hb.Dropped) and got.reason in (
            DropReason.BAD_SIGNATURE,
            DropReason.TOO_LONG,
        )
    # and on every path of an engine, within a small CPU budget per frame
    monkeypatch.undo()
    alpha = engine(
        "alpha",
        keys,
        WireFormat.HEARTBEAT,
        paths=((UDP, PathKind.DATAGRAM), (SERIAL, PathKind.SERIAL)),
    )
    for path, data in ((UDP, classic), (UDP, net), (SERIAL, classic)):
        costs = []
        for _ in range(15):
            t0 = time.process_time()
            alpha.receive_frame(path, data, 1.0, "10.0.0.66")
            costs.append(time.process_time() - t0)
        assert statistics.median(costs) < 0.002, (path, data[:4], costs)
        drops = [x for x in events(alpha) if isinstance(x, FrameDropped)]
        assert len(drops) == 15 and all(d.reason is not DropReason.MALFORMED for d in drops)


def test_a_signed_frame_with_too_many_fields_is_refused_before_its_fields_are_read() -> None:
    keys = AuthKeys(SHA1, {2: SHA1})
    for count in (hb.MAX_FIELDS + 10, 2000):
        msg = _many_fields(count)
        for data in (hb.encode_classic(msg, SHA1), hb.encode_netstring(msg, SHA1)):
            got = hb.decode_frame(data, keys)
            assert isinstance(got, hb.Dropped) and got.reason is DropReason.TOO_LONG, count
            assert f"more than {hb.MAX_FIELDS} fields" in got.detail
    ok = _many_fields(hb.MAX_FIELDS - 20)
    assert hb.decode_frame(hb.encode_classic(ok, SHA1), keys) == ok.with_field(
        "auth", hb.auth_token(SHA1, hb.classic_signed_text(ok))
    )


def test_heartbeats_crc_is_computed_at_c_speed_and_unchanged() -> None:
    import os

    from hbd.core.wire import ha_auth

    for n in (0, 1, 7, 300, 5000):
        data = os.urandom(n)
        assert ha_auth.heartbeat_crc(data) == ha_auth.heartbeat_crc_reference(data)
    data = os.urandom(64 * 1024)
    t0 = time.process_time()
    ha_auth.heartbeat_crc(data)
    assert time.process_time() - t0 < 0.002


# -- 2. replayed NS_rexmit ------------------------------------------------------------------

HB_KEYS = AuthKeys(SHA1, {2: SHA1})


def _rexmit(first: int, last: int, generation: int = 7) -> bytes:
    msg = ctl.rexmit_message(
        "beta", UUID["beta"], "alpha", UUID["alpha"], first, last, generation, 0x6000_0000
    )
    return hb.encode_netstring(msg, SHA1)


def _live_paths() -> tuple[tuple[str, PathKind], ...]:
    return ((UDP, PathKind.DATAGRAM), (UDP2, PathKind.DATAGRAM), (SERIAL, PathKind.SERIAL))


def _live_pair() -> tuple[Engine, Engine, float]:
    alpha = engine("alpha", HB_KEYS, WireFormat.HEARTBEAT, paths=_live_paths())
    beta = engine("beta", HB_KEYS, WireFormat.HEARTBEAT, paths=_live_paths())
    now = run(alpha, beta, 0.0, 30.0)
    events(alpha)
    now = alpha.get_timer() or now  # just after a heartbeat: the next is a keepalive away
    alpha.handle_timer(now)
    alpha.frames_to_send(now)
    return alpha, beta, now


def test_a_replayed_ns_rexmit_flood_is_answered_within_a_bounded_budget() -> None:
    alpha, _, now = _live_pair()
    top = alpha.newest_sent
    data = _rexmit(top - 31, top)  # one genuine request for 32 messages, captured
    received = sent_frames = sent_bytes = 0
    for i in range(1000):  # replayed 1000 times in one second (262 kB/s)
        t = now + i / 1000
        alpha.receive_frame(UDP, data, t, "10.0.0.66")
        received += len(data)
        out = alpha.frames_to_send(t)
        sent_frames += len(out)
        sent_bytes += sum(len(d) for _, d in out)
    # without a limit: 32 messages x 3 paths per copy, 96,000 frames and 28 bytes per byte;
    # now one full answer, 8 more messages in that second, and the second's heartbeat
    assert sent_frames <= 3 * (32 + 8) + 3
    assert sent_bytes <= received / 5
    # a second later the peer may ask again (the bucket refills), but not for the same
    # messages within max_rexmit_delay of their last resend
    alpha.receive_frame(UDP, data, now + 2.0, "10.0.0.66")
    again = [d for _, d in alpha.frames_to_send(now + 2.0)]
    assert 0 < len(again) <= 3 * 32 + 3


def test_one_request_for_32_messages_is_answered_eight_a_turn_and_in_full() -> None:
    alpha, _, now = _live_pair()
    top = alpha.newest_sent
    alpha.receive_frame(UDP, _rexmit(top - 31, top), now, "10.0.0.2")
    turns = [alpha.frames_to_send(now)]
    assert len(turns[0]) == 3 * engine_mod.REXMIT_PER_TURN  # 8 messages, every path, now
    t = now
    while (due := alpha.get_timer()) is not None and due < now + 0.5:
        t = due
        alpha.handle_timer(t)
        turns.append([f for f in alpha.frames_to_send(t) if f[1] not in {b for _, b in turns[0]}])
    resent = [d for turn in turns for p, d in turn if p == UDP]
    assert all(len(turn) <= 3 * engine_mod.REXMIT_PER_TURN + 3 for turn in turns)
    assert len(set(resent)) >= 32  # all 32 answered (a heartbeat may have gone out too)
    assert t - now <= 4 * engine_mod.REXMIT_SPACING + 1e-9  # within four turns


def test_owed_answers_are_void_once_the_requester_restarts() -> None:
    alpha, _, now = _live_pair()
    top = alpha.newest_sent
    alpha.receive_frame(UDP, _rexmit(top - 31, top), now, "10.0.0.2")
    alpha.frames_to_send(now)
    restarted = engine("beta", HB_KEYS, WireFormat.HEARTBEAT, paths=_live_paths(), generation=8)
    restarted.handle_timer(now)
    for path, data in restarted.frames_to_send(now):
        alpha.receive_frame(path, data, now, "10.0.0.2")
    t = now + engine_mod.REXMIT_SPACING
    alpha.handle_timer(t)
    assert alpha.frames_to_send(t) == []  # nothing more for the old incarnation


def test_the_same_message_is_resent_at_most_once_per_max_rexmit_delay() -> None:
    alpha, _, now = _live_pair()
    top = alpha.newest_sent
    alpha.receive_frame(UDP, _rexmit(top, top), now, "10.0.0.2")
    assert len(alpha.frames_to_send(now)) == 3  # once on every path
    alpha.receive_frame(UDP2, _rexmit(top, top), now + 0.1, "10.0.1.2")
    assert alpha.frames_to_send(now + 0.1) == []  # within max_rexmit_delay (250 ms)
    alpha.receive_frame(UDP, _rexmit(top, top), now + 0.3, "10.0.0.2")
    assert len(alpha.frames_to_send(now + 0.3)) == 3


def test_rexmit_requests_outside_the_requesters_current_generation_are_ignored() -> None:
    alpha, _, now = _live_pair()
    top = alpha.newest_sent
    for generation in (6, 8):  # from before its restart, or forged ahead of it
        alpha.receive_frame(UDP, _rexmit(top, top, generation), now, "10.0.0.66")
        assert alpha.frames_to_send(now) == []
    # seqs we never sent are neither resent nor naked
    alpha.receive_frame(UDP, _rexmit(top + 1, top + 32), now, "10.0.0.66")
    assert alpha.frames_to_send(now) == []
    alpha.receive_frame(UDP, _rexmit(top, top), now, "10.0.0.2")
    assert len(alpha.frames_to_send(now)) == 3


# -- 5. path health cannot be faked ---------------------------------------------------------

TWO_LANS = ((UDP, PathKind.DATAGRAM), (UDP2, PathKind.DATAGRAM))


def _native_pair() -> tuple[Engine, Engine]:
    keys = AuthKeys(SHA256, {2: SHA256})
    return engine("alpha", keys, paths=TWO_LANS), engine("beta", keys, paths=TWO_LANS)


def _exchange(
    a: Engine,
    b: Engine,
    start: float,
    seconds: float,
    deliver: Callable[[Engine, str, bytes], list[str]] | None = None,
) -> tuple[float, list[tuple[str, bytes]]]:
    """Like `run`, with `deliver(src, path, data)` saying which of the receiver's paths get
    each frame (default: its own). Returns the time and every frame beta sent."""
    now, sent = start, []
    while now < start + seconds:
        now += 0.5
        for x in (a, b):
            x.handle_timer(now)
        for src, dst in ((a, b), (b, a)):
            for path, data in src.frames_to_send(now):
                if src is b:
                    sent.append((path, data))
                for into in deliver(src, path, data) if deliver else [path]:
                    dst.receive_frame(into, data, now + 0.001, "10.0.0.2")
    return now, sent


def test_eth0_frames_relayed_into_a_cut_eth1_do_not_keep_it_up() -> None:
    alpha, beta = _native_pair()
    now, _ = _exchange(alpha, beta, 0.0, 5.0)
    assert alpha.membership.path_state("beta", UDP2).value == "up"

    def relay(src: Engine, path: str, data: bytes) -> list[str]:
        if src is alpha:
            return [path]
        return [UDP, UDP2] if path == UDP else []  # eth1 cut; eth0's copies injected there

    events(alpha)
    now, _ = _exchange(alpha, beta, now, 15.0, relay)
    assert alpha.membership.path_state("beta", UDP2).value == "dead"
    assert alpha.membership.path_state("beta", UDP).value == "up"
    drops = {x.reason for x in events(alpha) if isinstance(x, FrameDropped)}
    assert DropReason.WRONG_PATH in drops
    # the wire restored: eth1 carries beta again
    now, _ = _exchange(alpha, beta, now, 3.0)
    assert alpha.membership.path_state("beta", UDP2).value == "up"


def _echoes(frames: list[tuple[str, bytes]], kind: int) -> list[tuple[str, bytes]]:
    return [(p, d) for p, d in frames if d[0] == 0xB8 and d[2] >> 4 == kind]


def test_a_replayed_native_echo_is_answered_once() -> None:
    alpha, beta = _native_pair()
    now, sent = _exchange(alpha, beta, 0.0, 12.0)
    path, echo = _echoes(sent, 2)[0]  # beta's probe, captured
    alpha.frames_to_send(now)
    replies = 0
    for i in range(1000):
        alpha.receive_frame(path, echo, now + i / 1000, "10.0.0.66")
        replies += len(_echoes(alpha.frames_to_send(now + i / 1000), 3))
    assert replies == 0  # it was answered when it came; never again


def test_a_replayed_echo_reply_gives_no_second_round_trip_sample() -> None:
    alpha, beta = _native_pair()
    now, sent = _exchange(alpha, beta, 0.0, 6.0)
    path, reply = _echoes(sent, 3)[-1]  # beta's answer to alpha's latest probe
    before = alpha.rtt("beta", path)
    assert before is not None and before < 0.01
    alpha.receive_frame(path, reply, now + 3.0, "10.0.0.66")  # 3 s later: a huge sample
    assert alpha.rtt("beta", path) == before


# -- 4. replays after the receiver restarts -------------------------------------------------


def _restarted(old: Engine, now: float) -> Engine:
    """`old`'s node started again: the next generation, and what it saved of its peers."""
    s = old.settings
    remembered = old.remembered_generations()
    return Engine(
        dataclasses.replace(s, generation=s.generation + 1, peer_generations=remembered), now
    )


def _replay(e: Engine, frames: list[tuple[str, bytes]], start: float, every: float) -> float:
    now = start
    for path, data in frames:
        now += every
        e.handle_timer(now)
        e.receive_frame(path, data, now, "10.0.0.66")
        e.frames_to_send(now)
    return now


def _until_dead(e: Engine, now: float, peer: str = "beta") -> float:
    """Time passes with `peer` silent until `e` declares it dead."""
    for _ in range(1000):
        if e.membership.node_state(peer) is NodeState.DEAD:
            return now
        now += 0.5
        e.handle_timer(now)
        e.frames_to_send(now)
    raise AssertionError(f"{peer} never declared dead")


def test_replays_after_the_receiver_restarts_do_not_keep_a_dead_peer_alive() -> None:
    for wire in WireFormat:
        keys = AuthKeys(SHA256, {2: SHA256}) if wire is WireFormat.HBD else HB_KEYS
        alpha = engine("alpha", keys, wire, paths=TWO_LANS)
        beta = engine("beta", keys, wire, paths=TWO_LANS)
        now, recorded = _exchange(alpha, beta, 0.0, 20.0)
        # beta crashes; alpha declares it dead, then restarts itself
        now = _until_dead(alpha, now)
        alpha = _restarted(alpha, now + 1.0)
        # the attacker plays beta's recorded frames back, one every 9 s (deadtime is 10)
        now = _replay(alpha, recorded, now + 1.0, 9.0 / len(recorded) * 2)
        got = events(alpha)
        assert not [x for x in got if isinstance(x, NodeUp)], wire
        assert alpha.membership.node_state("beta") in (NodeState.INIT, NodeState.DEAD)
        stale = [x for x in got if isinstance(x, FrameDropped) and x.reason is DropReason.STALE]
        assert stale and "before this node restarted" in stale[0].detail, wire


def test_a_live_peer_is_heard_at_once_after_the_receiver_restarts() -> None:
    for wire in WireFormat:
        keys = AuthKeys(SHA256, {2: SHA256}) if wire is WireFormat.HBD else HB_KEYS
        alpha = engine("alpha", keys, wire, paths=TWO_LANS)
        beta = engine("beta", keys, wire, paths=TWO_LANS)
        now, _ = _exchange(alpha, beta, 0.0, 20.0)
        alpha = _restarted(alpha, now)
        now, _ = _exchange(alpha, beta, now, 1.5)
        assert alpha.membership.node_state("beta") is NodeState.ACTIVE, wire
        assert not [x for x in events(alpha) if isinstance(x, FrameDropped)], wire


def test_a_reinstalled_peer_is_told_from_a_replay_of_its_older_generation_by_a_fresh_nonce() -> (
    None
):
    keys = AuthKeys(SHA256, {2: SHA256})
    alpha = engine("alpha", keys, paths=TWO_LANS)
    beta = engine("beta", keys, paths=TWO_LANS, generation=6)
    now, old_frames = _exchange(alpha, beta, 0.0, 10.0)
    beta = engine("beta", keys, paths=TWO_LANS, generation=7, now=now)  # restarted
    now, _ = _exchange(alpha, beta, now, 10.0)
    assert alpha.node_status("beta", now).generation == 7
    # beta dies for good; after its deadtime, its generation-6 frames are played back
    now = _until_dead(alpha, now)
    events(alpha)
    now = _replay(alpha, old_frames, now, 0.4)
    got = events(alpha)
    assert not [x for x in got if isinstance(x, NodeUp | GenerationWentBack)]
    assert alpha.membership.node_state("beta") is NodeState.DEAD
    assert any(isinstance(x, FrameDropped) and "fresh echo" in x.detail for x in got)
    # a reinstalled beta (its state directory lost: generation 1) answers the nonce
    beta = engine("beta", keys, paths=TWO_LANS, generation=1, now=now)
    now, _ = _exchange(alpha, beta, now, 4.0)
    got = events(alpha)
    assert [
        (x.old_generation, x.new_generation) for x in got if isinstance(x, GenerationWentBack)
    ] == [(7, 1)]
    assert alpha.membership.node_state("beta") is NodeState.ACTIVE


def test_the_generations_are_looked_at_only_when_one_changed_and_saved_at_once_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hbd.testing import SimCluster

    sim = SimCluster(keepalive=0.2, deadtime=1.0)
    sim.run_for(3)
    alpha = sim.engine("alpha")
    built: list[float] = []
    snapshot = alpha.remembered_generations

    def counted() -> tuple[tuple[str, int, int], ...]:
        built.append(sim.clock.now)
        return snapshot()

    monkeypatch.setattr(alpha, "remembered_generations", counted)
    sim.run_for(20)  # ~300 frames from beta, none of a new generation, within the interval
    assert built == []
    sim.restart("beta")
    sim.run_for(3)
    assert built, "beta's new generation was never looked at"
    saved = dict((n, g) for n, g, _s in sim.machines["alpha"].generations)
    assert saved["beta"] == sim.engine("beta").generation  # written as soon as it was heard


def test_the_generations_are_saved_when_a_peer_dies_and_given_back_at_the_next_start(
    tmp_path: Path,
) -> None:
    from hbd.testing import SimCluster

    sim = SimCluster(keepalive=0.2, deadtime=1.0)
    sim.run_for(3)
    sim.power_off("beta")
    sim.run_for(3)  # alpha declares beta dead: its last generation and sequence are final
    saved = dict((n, (g, s)) for n, g, s in sim.machines["alpha"].generations)
    newest = sim.engine("alpha").membership.newest_heard("beta")
    assert saved["beta"] == newest
    sim.restart("alpha")
    assert sim.engine("alpha").settings.peer_generations == sim.machines["alpha"].generations
    # the state directory file, written durably, read back, bad lines named
    save_peer_generations(str(tmp_path), (("beta", 9, 1234),))
    text = (tmp_path / "generations").read_text()
    assert text.endswith("beta 9 1234\n") and not list(tmp_path.glob("*.tmp*"))
    assert load_peer_generations(str(tmp_path), ("beta",)) == ((("beta", 9, 1234),), [])
    (tmp_path / "generations").write_text("beta 9 1234\nzed 1 1\nbeta x 1\n")
    got, warnings = load_peer_generations(str(tmp_path), ("beta",))
    assert got == (("beta", 9, 1234),)
    assert warnings == [
        f"{tmp_path}/generations:2: 'zed' is no peer in ha.cf; line ignored",
        f"{tmp_path}/generations:3: expected 'NODE GENERATION SEQUENCE'; line ignored",
    ]
