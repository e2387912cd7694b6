"""The fault matrix: at no instant may both nodes run the group, whatever we break.

Each test builds tests/faultlab.py's lab -- alpha and beta over bcast (eth0), ucast (eth1)
and a serial line, both on a service LAN with a ping node, a FUSE watchdog per node (2 s
timeout, so a 3.45 s takeover budget), keepalive 200 ms, deadtime 1 s, native frames, the
group `alpha IPaddr::10.91.0.100/24` or (the issue-12 scenarios, for both kinds) the
address-less `alpha fmsvc` -- waits until alpha runs the group, then breaks something
while a sampler reads both namespaces' addresses, or both nodes' pid files of the service,
every 10 ms. Every test asserts that the group never ran on both nodes (0 ms dual-active),
who runs it at the end, how many watchdog resets fired, and, where the group moved, that
it moved no sooner than the takeover budget allows; where nothing may move, that alpha
never lost it, not for one sample. The summary table (dual-active ms, seconds from the
fault to a single stable holder, resets) is printed at the end of the module.

Honest notes on the tools: this kernel has no sch_netem, so loss is an nft `numgen random`
drop rule, and the 50 ms jitter comes from a userspace UDP relay on the ucast path (each
frame delayed by a uniform 0..100 ms, i.e. 50 ms +- 50 ms), spliced in with nft DNAT; see
faultlab's docstring. socat cannot cut a serial line in one direction, so the asymmetric
cut unplugs the serial line entirely and drops alpha's frames on both NICs with nft.
The soak lasts $HBD_SOAK_SECONDS (20 s by default here; bench/fault_matrix.py uses 120).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

import faultlab
from faultlab import BUDGET, GROUP_KINDS, HOME, GroupKind, Outcome
from netns import requires_root, requires_socat

pytestmark = [pytest.mark.root, pytest.mark.slow, requires_root, requires_socat]

PEER = "beta"
KEEPALIVE = faultlab.TIMING.keepalive / 1000
# a takeover counts the budget from when the peer was LAST heard, up to one keepalive
# before the fault; the sampler sees the address up to one interval (+ a busy gap) late
EARLIEST_TAKEOVER = BUDGET - KEEPALIVE - 0.1

_rows: list[Outcome] = []


@pytest.fixture(scope="module", autouse=True)
def summary(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print the fault-matrix table once every scenario of the module has run."""
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    lines = ["", "fault matrix", faultlab.HEADER, *(o.row() for o in _rows)]
    for line in lines:
        if reporter is not None:
            reporter.write_line(line)
        else:  # pragma: no cover - pytest always has one unless -p no:terminal
            print(line)


def run(name: str, group: GroupKind = "vip") -> Outcome:
    outcome = faultlab.run_scenario(name, group=group)
    _rows.append(outcome)
    print(faultlab.HEADER)
    print(outcome.row())
    print(outcome.timeline)
    for note in outcome.notes:
        print("note:", note)
    return outcome


def assert_never_dual(o: Outcome) -> None:
    assert o.dual_active_ms == 0, f"the VIP was on both nodes\n{o.timeline}"
    assert o.samples > 100, f"too few samples to vouch for anything\n{o.timeline}"


def assert_stayed_home(o: Outcome) -> None:
    """Nothing moved: alpha held the group throughout (not one sample without it), beta
    never, no node was reset."""
    assert_never_dual(o)
    assert o.holder == (HOME,), o.timeline
    assert o.moved_after is None, f"the VIP showed on beta\n{o.timeline}"
    assert o.stable_after == 0, f"the VIP left alpha at some point\n{o.timeline}"
    assert o.resets == {HOME: 0, PEER: 0}


def assert_taken_over(o: Outcome) -> None:
    """alpha was reset by its watchdog; beta took the VIP, not before the budget."""
    assert_never_dual(o)
    assert o.holder == (PEER,), o.timeline
    assert o.resets == {HOME: 1, PEER: 0}
    assert o.moved_after is not None
    assert o.moved_after >= EARLIEST_TAKEOVER, (
        f"beta took over {o.moved_after:.2f} s after the fault, inside the "
        f"{BUDGET:g} s takeover budget\n{o.timeline}"
    )


def test_one_path_cut_is_a_path_fault_nothing_moves() -> None:
    assert_stayed_home(run("one_path_cut"))


def test_each_path_cut_in_turn_nothing_moves() -> None:
    assert_stayed_home(run("each_path_in_turn"))


def test_all_paths_cut_both_see_ping_node_holder_keeps_it() -> None:
    """The peer probes the VIP over the service LAN: it still answers, so no takeover."""
    assert_stayed_home(run("all_paths_cut_ping_seen"))


def test_isolated_holder_releases_self_fences_and_peer_takes_over() -> None:
    assert_taken_over(run("isolated_holder"))


def test_isolated_holder_over_heartbeat_wire_peer_waits_the_budget() -> None:
    o = faultlab.run_scenario("isolated_holder", wire=None, auth="sha1")
    _rows.append(o)
    assert_taken_over(o)


def test_active_daemon_sigkilled_watchdog_resets_it_peer_takes_over() -> None:
    assert_taken_over(run("sigkill_active"))


def test_active_daemon_sigstopped_reset_before_sigcont_peer_holds() -> None:
    o = run("sigstop_active")
    assert_taken_over(o)
    assert not any("survived" in n for n in o.notes), o.notes


def test_asymmetric_cut_alpha_hears_beta_beta_deaf_holder_keeps_it() -> None:
    assert_stayed_home(run("asymmetric_cut"))


def test_loss_and_jitter_on_one_path_nothing_moves() -> None:
    o = run("loss_and_jitter")
    assert_stayed_home(o)
    assert any("forwarded" in n and "delay" in n for n in o.notes), (
        f"the jitter relay carried nothing: {o.notes}"
    )


@pytest.mark.parametrize("group", faultlab.GROUP_KINDS)
def test_serial_unplugged_and_replugged_while_nics_down_nothing_moves(group: GroupKind) -> None:
    """The last path unplugged for 1.5 s, less than the budget. Regression (address-less
    group): the serial reopen backoff (0.5 s doubling to 5 s) reopened it only 3.5 s after
    the unplug, past the 3.45 s budget; with nothing of alpha to probe beta took the
    group over for 110 ms beside alpha. Reopens are now at most deadtime / 2 apart."""
    assert_stayed_home(run("serial_replug_nics_down", group))


def test_peer_returning_after_partition_gets_the_group_back_by_hand_off() -> None:
    o = run("peer_returns")
    assert_never_dual(o)
    assert o.holder == (HOME,), o.timeline
    assert o.resets == {HOME: 1, PEER: 0}
    assert o.moved_after is not None and o.moved_after >= EARLIEST_TAKEOVER, o.timeline


# -- issue 12, section 5: each for the VIP group and the address-less one ----------------
# The address-less group is `alpha fmsvc`, a resource.d script whose pid file is its state
# (faultlab's SERVICE_SCRIPT); its sampler reads both pid files every 10 ms. A partition
# cuts the VIP group's heartbeat wires (link down: the VIP on the LAN is the evidence
# left) but only the address-less group's heartbeat traffic (nft: ARP to the nodes' own
# addresses is the evidence left; with those wires cut too nothing of the peer could be
# probed: the residual case of docs/policy.md).

kinds = pytest.mark.parametrize("group", GROUP_KINDS)


@kinds
def test_standby_power_loss_holder_serves_uninterrupted_and_is_not_reset(
    group: GroupKind,
) -> None:
    """beta loses power (every process killed, addresses gone, links silent) and comes
    back: alpha never stops the group, its watchdog never fires, beta starts nothing."""
    assert_stayed_home(run("standby_power_loss", group))


@kinds
def test_reboot_during_partition_starts_nothing_the_peer_runs(group: GroupKind) -> None:
    """Every heartbeat path cut, beta power-cycled while it lasts: beta comes back never
    having heard alpha, finds alpha's addresses answering and starts nothing."""
    assert_stayed_home(run("reboot_during_partition", group))


@kinds
def test_cut_during_handoff_never_puts_the_group_on_both(group: GroupKind) -> None:
    """`hbctl standby` on alpha and every heartbeat path cut in the same breath: wherever
    the hand-off was caught, the group is never on both; healed, beta holds it."""
    o = run("cut_during_handoff", group)
    assert_never_dual(o)
    assert o.holder == (PEER,), o.timeline
    assert o.resets == {HOME: 0, PEER: 0}


@kinds
def test_icmp_filtered_service_address_then_partition_nothing_moves(group: GroupKind) -> None:
    """ICMP echo to every address of both nodes (the VIP's too) dropped, then every
    heartbeat path cut: the probes ask by ARP, the peer answers, nothing moves."""
    assert_stayed_home(run("icmp_filtered_service_address", group))


@kinds
def test_reload_while_degraded_nothing_moves(group: GroupKind) -> None:
    """One path left (bcast down, serial unplugged); a changed ha.cf reloaded by SIGHUP on
    alpha, then beta: nothing moves, nobody is reset."""
    assert_stayed_home(run("reload_while_degraded", group))


# -- issue 14: the arbiter, the real corosync-qnetd in a namespace beside the ping node ----
# (faultlab.QnetdServer; both ha.cf say `qnetd 10.91.0.4`). "Every wire cut" leaves the
# address-less group nothing of the peer to probe: without an arbiter the residual case,
# with one decided by the vote.

requires_qnetd = pytest.mark.skipif(
    shutil.which("corosync-qnetd") is None, reason="needs corosync-qnetd (.ci/install)"
)


@requires_qnetd
def test_qnetd_every_wire_cut_the_holder_has_the_vote_and_serves_uninterrupted() -> None:
    assert_stayed_home(run("qnetd_all_paths_cut", "script"))


@requires_qnetd
def test_qnetd_every_wire_cut_the_holder_without_the_vote_goes_before_beta_takes() -> None:
    o = run("qnetd_all_paths_cut_holder_loses", "script")
    assert_never_dual(o)
    assert o.holder == (PEER,), o.timeline
    assert o.resets == {HOME: 1, PEER: 0}


@requires_qnetd
@kinds
def test_qnetd_the_standby_loses_power_the_holder_serves_uninterrupted(group: GroupKind) -> None:
    assert_stayed_home(run("qnetd_standby_power_loss", group))


@requires_qnetd
@kinds
def test_qnetd_the_holder_loses_power_beta_serves_within_three_seconds_past_the_budget(
    group: GroupKind,
) -> None:
    o = run("qnetd_holder_power_loss", group)
    assert_never_dual(o)
    assert o.holder == (PEER,), o.timeline
    assert o.moved_after is not None
    # not before the bound that makes it safe, and within the 3 s past the budget
    assert o.moved_after >= EARLIEST_TAKEOVER + faultlab.DECISION, o.timeline
    assert o.moved_after <= BUDGET + 3.0, o.timeline


@requires_qnetd
def test_qnetd_dies_and_returns_nothing_moves_and_status_says_degraded() -> None:
    assert_stayed_home(run("qnetd_dies_and_returns", "script"))


@requires_qnetd
@kinds
def test_qnetd_down_then_a_partition_is_handled_as_without_an_arbiter(group: GroupKind) -> None:
    assert_stayed_home(run("qnetd_down_then_partition", group))


@requires_qnetd
def test_qnetd_the_holder_reaches_qnetd_the_peer_neither_the_holder_keeps() -> None:
    assert_stayed_home(run("qnetd_holder_reaches_only_qnetd", "script"))
