"""Heartbeat 3.0.6's resource protocol as hbd follows it (hbd.core.hbresources).

Each scenario replays, message for message, what a real Heartbeat 3.0.6 node `hb` sent in
captures taken in network namespaces (two Heartbeat nodes, then Heartbeat beside hbd;
tests/test_interop_resources.py runs the real thing), and checks what this node, `alpha`,
answers and which of its groups it lets run. `local` and `foreign` on the wire are the
sender's; `wants(local=...)` is alpha's.
"""

from __future__ import annotations

import pytest

from hbd.core.errors import LocalProtocolError
from hbd.core.hbresources import RQSTDELAY, HeartbeatResources, Rsc
from hbd.core.model import AutoFailback

ALL, NONE = Rsc.ALL, Rsc.NONE


def node(auto_failback: AutoFailback = AutoFailback.ON) -> HeartbeatResources:
    return HeartbeatResources("alpha", "hb", auto_failback, now=0.0)


def sent(n: HeartbeatResources) -> list[tuple[str, dict[str, str]]]:
    out = []
    while (m := n.next_message()) is not None:
        out.append((m.type, dict(m.fields)))
    return out


def held(rsc: str, stable: bool, info: str | None = None) -> tuple[str, dict[str, str]]:
    fields = {"rsc_hold": rsc, "rtype": "full", "isstable": "1" if stable else "0"}
    if info is not None:
        fields["info"] = info
    return ("resource", fields)


def test_joining_a_stable_holder_takes_nothing_and_answers_as_heartbeat_does() -> None:
    alpha = node()
    alpha.begin(1.0, NONE)
    assert sent(alpha) == [("starting", {})]
    alpha.message(1.1, "resource", dict(held("all", True)[1]))  # hb serves everything
    # "none isstable=0" (remote transition completed), then "none isstable=1" (stable)
    assert sent(alpha) == [held("none", False), held("none", True)]
    assert not alpha.wants(local=True) and not alpha.wants(local=False)
    assert alpha.rstate.value == "stable" and alpha.peer_holds is ALL


def test_both_starting_each_takes_its_own_groups_after_the_request_delay() -> None:
    alpha = node()
    alpha.local_state(0.5, running=NONE, started=Rsc.FOREIGN, stopped=ALL)  # one local group
    alpha.begin(1.0, NONE)
    alpha.message(1.2, "starting", {})
    alpha.message(1.3, "resource", dict(held("none", False)[1]))
    assert sent(alpha) == [("starting", {}), held("none", False)]
    assert not alpha.wants(local=True)
    assert alpha.get_timer() == pytest.approx(1.3 + RQSTDELAY)
    alpha.handle_timer(1.3 + RQSTDELAY)
    assert alpha.wants(local=True) and not alpha.wants(local=False)
    assert sent(alpha) == [held("local", True)]
    alpha.local_state(12.0, running=Rsc.LOCAL, started=ALL, stopped=Rsc.FOREIGN)
    assert sent(alpha) == [held("local", True, "req_our_resources()")]


def test_hb_standby_on_the_holder_hands_everything_to_alpha() -> None:
    alpha = node()
    alpha.begin(1.0, NONE)
    alpha.message(1.1, "resource", dict(held("all", True)[1]))
    sent(alpha)
    alpha.message(5.0, "ask_resources", {"rsc_hold": "all", "info": "me"})
    assert sent(alpha) == [("ask_resources", {"rsc_hold": "all", "info": "other"})]
    alpha.message(5.2, "resource", dict(held("none", False, "standby")[1]))
    assert not alpha.wants(local=False), "nothing starts before hb says it released"
    alpha.message(5.5, "ask_resources", {"rsc_hold": "all", "info": "done"})
    assert alpha.wants(local=True) and alpha.wants(local=False)
    alpha.local_state(6.0, running=ALL, started=ALL, stopped=NONE)
    assert sent(alpha) == [
        ("ask_resources", {"rsc_hold": "all", "info": "done"}),
        held("all", True),
    ]
    assert alpha.handshake.value == "none" and alpha.hold is ALL


def test_auto_failback_hands_the_peers_groups_back_once_it_is_stable() -> None:
    alpha = node()
    alpha.begin(1.0, NONE)
    alpha.message(1.1, "resource", dict(held("none", True)[1]))
    sent(alpha)
    alpha.local_state(2.0, running=Rsc.LOCAL, started=ALL, stopped=Rsc.FOREIGN)
    assert sent(alpha) == [held("local", True, "req_our_resources()")]
    alpha.peer_lost(10.0)  # hb crashed; the policy takes its groups over
    alpha.local_state(10.5, running=ALL, started=ALL, stopped=NONE)
    alpha.begin(20.0, ALL)  # hb is back while alpha serves everything
    assert sent(alpha) == [held("all", True)]
    alpha.message(20.1, "starting", {})
    assert sent(alpha) == [held("all", True)]
    alpha.message(20.2, "resource", dict(held("none", False)[1]))
    alpha.message(20.3, "resource", dict(held("none", True)[1]))
    assert sent(alpha) == [
        held("all", True),
        ("ask_resources", {"rsc_hold": "foreign", "info": "me"}),
    ]
    assert alpha.wants(local=False), "nothing is given up before hb answers"
    alpha.message(20.4, "ask_resources", {"rsc_hold": "foreign", "info": "other"})
    assert not alpha.wants(local=False) and alpha.wants(local=True)
    assert sent(alpha) == [held("local", False, "standby")]
    alpha.local_state(21.0, running=Rsc.LOCAL, started=ALL, stopped=Rsc.FOREIGN)
    assert sent(alpha) == [("ask_resources", {"rsc_hold": "foreign", "info": "done"})]
    alpha.message(22.0, "ask_resources", {"rsc_hold": "foreign", "info": "done"})
    assert sent(alpha) == [held("local", True)]


def test_auto_failback_off_keeps_the_peers_groups() -> None:
    alpha = node(AutoFailback.OFF)
    alpha.begin(1.0, NONE)
    alpha.message(1.1, "resource", dict(held("none", True)[1]))
    alpha.peer_lost(10.0)
    alpha.begin(20.0, ALL)
    alpha.message(20.1, "starting", {})
    alpha.message(20.3, "resource", dict(held("none", True)[1]))
    assert all(t != "ask_resources" for t, _ in sent(alpha))
    assert alpha.wants(local=False)


def test_hb_takeover_from_the_peer_starts_alphas_hand_off() -> None:
    alpha = node()
    alpha.begin(20.0, ALL)
    sent(alpha)
    alpha.message(21.0, "hb_takeover", {"rsc_hold": "all"})
    assert sent(alpha) == [("ask_resources", {"rsc_hold": "all", "info": "me"})]


def test_a_hand_off_is_refused_while_the_peer_is_moving() -> None:
    alpha = node()
    alpha.begin(1.0, NONE)
    alpha.message(1.2, "starting", {})
    with pytest.raises(LocalProtocolError, match="not stable"):
        alpha.standby("all", 2.0)


def test_standby_refuses_what_the_peer_would_hand_over() -> None:
    alpha = node()
    alpha.begin(1.0, NONE)
    alpha.message(1.1, "resource", dict(held("all", True)[1]))
    sent(alpha)
    alpha.refuse_groups(ALL)
    alpha.message(5.0, "ask_resources", {"rsc_hold": "all", "info": "me"})
    assert sent(alpha) == [], "a node in standby does not answer 'other'"
    assert not alpha.wants(local=False)


def test_shutdown_gives_everything_up_and_says_so() -> None:
    alpha = node()
    alpha.begin(20.0, ALL)
    sent(alpha)
    alpha.shutdown(30.0)
    assert not alpha.wants(local=True) and not alpha.wants(local=False)
    assert sent(alpha) == [held("none", False, "shutdown")]


@pytest.mark.parametrize(
    ("mtype", "fields", "error"),
    [
        ("resource", {"rsc_hold": "most", "isstable": "1"}, "rsc_hold: 'most'"),
        ("resource", {"rsc_hold": "all", "isstable": "yes"}, "isstable: 'yes'"),
        ("ask_resources", {"rsc_hold": "all", "info": "maybe"}, "info: 'maybe'"),
        ("hb_takeover", {"rsc_hold": "half"}, "hb_takeover rsc_hold: 'half'"),
        ("ip-request", {}, "without ipaddr"),
    ],
)
def test_a_message_that_cannot_be_understood_is_refused_and_changes_nothing(
    mtype: str, fields: dict[str, str], error: str
) -> None:
    alpha = node()
    alpha.begin(1.0, NONE)
    sent(alpha)
    before = alpha.summary()
    with pytest.raises(LocalProtocolError, match=error):
        alpha.message(2.0, mtype, fields)
    assert alpha.summary() == before and sent(alpha) == []
