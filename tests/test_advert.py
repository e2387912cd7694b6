"""Adverts: what a node says about its resource groups reaches its peers, in either wire
format, on change and again every second, and garbage never decodes as one."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hbd.core.advert import NO_NODE, Advert, Standby, decode_advert, group_digest
from hbd.core.errors import LocalProtocolError
from hbd.core.events import AdvertReceived
from hbd.core.model import WireFormat
from hbd.testing import SimCluster

WIRES = pytest.mark.parametrize(
    "wire", [WireFormat.HBD, WireFormat.HEARTBEAT], ids=lambda w: w.value
)


@st.composite
def adverts(draw: st.DrawFn) -> Advert:
    n = draw(st.integers(0, 64))
    return Advert(
        digest=draw(st.integers(0, 0xFFFF)),
        running=tuple(draw(st.lists(st.booleans(), min_size=n, max_size=n))),
        targets=tuple(draw(st.lists(st.integers(0, NO_NODE), min_size=n, max_size=n))),
        hears=draw(st.integers(0, 0xFFFF)),
        failed=tuple(draw(st.lists(st.booleans(), min_size=n, max_size=n))),
        standby=draw(st.sampled_from(Standby)),
        claim=draw(st.sampled_from(Standby)),
        claim_id=draw(st.integers(0, 0xFFFF)),
        epoch=draw(st.integers(0, 0xFFFF)),
        seen=tuple(draw(st.lists(st.integers(0, 0xFFFF), max_size=16))),
        started=tuple(draw(st.lists(st.booleans(), min_size=n, max_size=n))),
        arbiter=draw(st.sampled_from((None, False, True))),
        witness=draw(st.booleans()),
        offer=(offer := draw(st.sampled_from(Standby))),
        offer_id=draw(st.integers(0, 0xFFFF)) if offer is not Standby.NONE else 0,
    )


@given(adverts())
def test_an_advert_round_trips(advert: Advert) -> None:
    assert decode_advert(advert.encode()) == advert


@given(st.binary(max_size=120))
def test_any_bytes_decode_to_an_advert_or_none_never_an_exception(data: bytes) -> None:
    result = decode_advert(data)
    assert result is None or result.encode() == data


def test_the_arbiter_flag_is_one_trailing_byte_sent_only_with_an_arbiter() -> None:
    plain = Advert(1, (True,), (0,), failed=(False,), started=(True,))
    assert decode_advert(plain.encode()) == plain and plain.arbiter is None
    up = dataclasses.replace(plain, arbiter=True)
    assert up.encode() == plain.encode() + b"\x01"
    assert decode_advert(up.encode()) == up
    assert decode_advert(dataclasses.replace(plain, arbiter=False).encode()).arbiter is False
    assert decode_advert(plain.encode() + b"\x08") is None  # a flag this node does not know
    assert decode_advert(plain.encode() + b"\x03") is None  # "no arbiter" and "connected"
    assert decode_advert(plain.encode() + b"\x02") is None  # a byte that says nothing
    assert decode_advert(plain.encode() + b"\x00\x00") is None


def test_the_witness_flag_shares_the_byte_and_says_no_arbiter_when_there_is_none() -> None:
    plain = Advert(1, (True,), (0,), failed=(False,), started=(True,))
    alone = dataclasses.replace(plain, witness=True)
    assert alone.encode() == plain.encode() + b"\x06"
    assert decode_advert(alone.encode()) == alone and alone.arbiter is None
    both = dataclasses.replace(plain, witness=True, arbiter=True)
    assert both.encode() == plain.encode() + b"\x05"
    assert decode_advert(both.encode()) == both


def test_a_hand_off_offer_follows_the_flags_byte() -> None:
    plain = Advert(1, (True,), (0,), failed=(False,), started=(True,))
    offer = dataclasses.replace(plain, offer=Standby.LOCAL, offer_id=0x0102)
    assert offer.encode() == plain.encode() + b"\x0a\x01\x01\x02"
    assert decode_advert(offer.encode()) == offer
    assert decode_advert(plain.encode() + b"\x0a\x00\x01\x02") is None  # offers nothing
    assert decode_advert(plain.encode() + b"\x0a\x01\x01") is None  # cut short


def test_a_bad_advert_is_refused_by_its_builder() -> None:
    with pytest.raises(LocalProtocolError):
        Advert(0, (True,), ())
    with pytest.raises(LocalProtocolError):
        Advert(0, (), (), hears=1 << 16)


def test_standby_modes_cover_the_right_groups() -> None:
    assert Standby.parse("local").covers(preferred_is_self=True)
    assert not Standby.parse("local").covers(preferred_is_self=False)
    assert Standby.parse("foreign").covers(preferred_is_self=False)
    assert Standby.parse("all").covers(True) and Standby.parse("all").covers(False)
    assert not Standby.parse("off").covers(True)
    with pytest.raises(LocalProtocolError, match="not a standby mode"):
        Standby.parse("sideways")


def test_the_digest_tells_different_group_lists_apart() -> None:
    assert group_digest(("a", "b")) != group_digest(("b", "a"))
    assert group_digest(("a", "b")) == group_digest(("a", "b"))


@WIRES
def test_a_changed_advert_reaches_the_peer_at_once_and_is_repeated_ever_less_often(
    wire: WireFormat,
) -> None:
    sim = SimCluster(wire=wire, keepalive=0.2, deadtime=1.0)
    sim.run_for(3)
    first = Advert(group_digest(("g",)), (True,), (0,)).encode()
    sim.engine("alpha").set_advert(first, sim.clock.now)
    sim.run_for(0.05)  # well within one keepalive: sent on change, not with the next beat
    got = [e for _, e in sim.events_of("beta", AdvertReceived)]
    assert got == [AdvertReceived("alpha", first)]
    assert sim.engine("beta").advert_of("alpha") == first
    sent = sim.engine("alpha").newest_sent
    sim.run_for(3.2)
    beats = round(3.2 / 0.2)
    repeats = sim.engine("alpha").newest_sent - sent - beats  # sequenced frames beyond beats
    assert repeats == 2  # about 1 s after the change, then 2 s after that...
    sent = sim.engine("alpha").newest_sent
    sim.run_for(60)
    repeats = sim.engine("alpha").newest_sent - sent - round(60 / 0.2)
    assert 4 <= repeats <= 5  # ...4, 8 and 16 s, then every 16 s while it stays the same
    assert len(sim.events_of("beta", AdvertReceived)) == 1  # ...and no news to the peer
    changed = Advert(group_digest(("g",)), (False,), (0,)).encode()
    sim.engine("alpha").set_advert(changed, sim.clock.now)
    sim.run_for(0.25)  # the engine is driven behind the node's back: by its next turn
    got = [e for _, e in sim.events_of("beta", AdvertReceived)]
    assert got == [AdvertReceived("alpha", first), AdvertReceived("alpha", changed)]


def settled_advert(sim: SimCluster) -> bytes:
    """alpha's advert set, sent, and repeated until it repeats only every 16 s."""
    sim.run_for(3)
    advert = Advert(group_digest(("g",)), (True,), (0,)).encode()
    sim.engine("alpha").set_advert(advert, sim.clock.now)
    sim.run_for(40)
    assert sim.engine("beta").advert_of("alpha") == advert
    return advert


def until_heard(sim: SimCluster, node: str, peer: str, within: float) -> float:
    """Run until `node` counts `peer` alive; the time that took."""
    start = sim.clock.now
    while peer not in sim.engine(node).membership.live_nodes():
        assert sim.clock.now - start < within, f"{node} never heard {peer} again"
        sim.run_for(0.01)
    return sim.clock.now - start


@WIRES
def test_an_unchanged_advert_goes_at_once_to_a_restarted_peer(wire: WireFormat) -> None:
    sim = SimCluster(wire=wire, keepalive=0.2, deadtime=1.0)
    advert = settled_advert(sim)
    sim.restart("beta")  # a new incarnation: it holds nothing of alpha's
    assert sim.engine("beta").advert_of("alpha") is None
    until_heard(sim, "beta", "alpha", 5.0)
    sim.run_for(0.5)  # a round trip and a turn, not the 16 s to the next repeat
    assert sim.engine("beta").advert_of("alpha") == advert


@WIRES
def test_an_unchanged_advert_goes_at_once_when_a_one_way_cut_heals(wire: WireFormat) -> None:
    # beta stops hearing alpha (alpha still hears beta), counts it dead, forgets its
    # advert; alpha learns that from beta's heartbeats, which stop listing it
    sim = SimCluster(wire=wire, keepalive=0.2, deadtime=1.0)
    advert = settled_advert(sim)
    paths = sim.engine("alpha").path_ids
    for path in paths:
        sim.cut(path, "alpha", "beta", both=False)
    sim.run_for(2.0)
    assert sim.engine("beta").advert_of("alpha") is None
    for path in paths:
        sim.heal(path, "alpha", "beta", both=False)
    until_heard(sim, "beta", "alpha", 5.0)
    sim.run_for(0.5)
    assert sim.engine("beta").advert_of("alpha") == advert


@WIRES
@pytest.mark.parametrize("cut_for", [1.5, 2.05, 2.1, 2.15])
def test_an_unchanged_advert_goes_at_once_when_a_partition_heals(
    wire: WireFormat, cut_for: float
) -> None:
    # both count the other dead: whichever hears the other first, beta's first heartbeat
    # may already list alpha, so alpha goes by what it heard, not by beta's acks
    sim = SimCluster(wire=wire, keepalive=0.2, deadtime=1.0)
    advert = settled_advert(sim)
    sim.isolate("alpha")
    sim.run_for(cut_for)
    assert sim.engine("beta").advert_of("alpha") is None
    sim.heal_all()
    until_heard(sim, "beta", "alpha", 5.0)
    sim.run_for(0.5)
    assert sim.engine("beta").advert_of("alpha") == advert


@WIRES
def test_a_dead_peers_advert_is_forgotten(wire: WireFormat) -> None:
    sim = SimCluster(wire=wire, keepalive=0.2, deadtime=1.0)
    sim.run_for(3)
    sim.engine("alpha").set_advert(Advert(1, (True,), (0,)).encode(), sim.clock.now)
    sim.run_for(1)
    assert sim.engine("beta").advert_of("alpha") is not None
    sim.crash("alpha")
    sim.run_for(2)
    assert sim.engine("beta").advert_of("alpha") is None


@WIRES
def test_the_watchdog_timeout_reaches_the_peer_in_either_wire_format(wire: WireFormat) -> None:
    """The takeover budget is twice the peer's watchdog timeout: the peer must know it."""
    sim = SimCluster(wire=wire, keepalive=0.2, deadtime=1.0, watchdog_timeout=2.0)
    sim.run_for(2)
    status = sim.engine("beta").node_status("alpha", sim.clock.now)
    assert status.watchdog == 2.0
