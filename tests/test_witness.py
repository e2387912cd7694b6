"""Ping witnesses: a ping node is up from its first answer until silent for deadping;
a ping group is up while any member answers."""

from hbd.core.witness import WitnessDead, Witnesses, WitnessUp


def drain(w: Witnesses) -> list[object]:
    out = []
    while (e := w.next_event()) is not None:
        out.append(e)
    return out


def make(now: float = 0.0) -> Witnesses:
    return Witnesses(
        ("10.0.0.254",),
        (("gw", ("10.0.1.1", "10.0.1.2")),),
        deadping=3.0,
        interval=1.0,
        now=now,
    )


def test_a_ping_node_that_answers_is_up_and_shows_its_rtt() -> None:
    w = make()
    assert w.due_echoes(0.0) == ("10.0.0.254", "10.0.1.1", "10.0.1.2")
    assert w.due_echoes(0.5) == ()
    w.reply("10.0.0.254", 0.002, 0.1)
    assert drain(w) == [WitnessUp("ping:10.0.0.254")]
    status = {s.witness: s for s in w.status(0.2)}
    assert status["ping:10.0.0.254"].status == "up"
    assert status["ping:10.0.0.254"].rtt == 0.002
    assert status["ping_group:gw"].status == "init"
    assert w.any_up()


def test_a_silent_ping_node_dies_after_deadping_and_comes_back() -> None:
    w = make()
    w.reply("10.0.0.254", 0.001, 1.0)
    drain(w)
    deadline = w.get_timer()
    assert deadline is not None
    now = 1.0
    while True:  # jump from timer to timer, as the daemon does
        t = w.get_timer()
        assert t is not None
        now = t
        w.due_echoes(now)
        w.handle_timer(now)
        events = drain(w)
        if any(isinstance(e, WitnessDead) and e.witness == "ping:10.0.0.254" for e in events):
            break
    assert now == 4.0  # last reply at 1.0 + deadping 3.0
    w.reply("10.0.0.254", 0.001, 5.0)
    assert WitnessUp("ping:10.0.0.254") in drain(w)


def test_a_ping_group_is_up_while_any_member_answers() -> None:
    w = make()
    w.reply("10.0.1.2", 0.003, 0.5)
    assert WitnessUp("ping_group:gw") in drain(w)
    w.reply("10.0.1.1", 0.004, 2.0)
    w.handle_timer(3.6)  # 10.0.1.2 silent for 3.1 s: dead; 10.0.1.1 still fresh
    assert {s.witness: s.status for s in w.status(3.6)}["ping_group:gw"] == "up"
    w.handle_timer(5.0)  # now both silent for deadping
    events = drain(w)
    assert WitnessDead("ping_group:gw", 3.0) in events


def test_never_answering_witnesses_are_declared_dead_after_deadping_from_start() -> None:
    w = make(now=10.0)
    w.handle_timer(12.9)
    assert drain(w) == []
    w.handle_timer(13.0)
    dead = {e.witness for e in drain(w) if isinstance(e, WitnessDead)}
    assert dead == {"ping:10.0.0.254", "ping_group:gw"}
    assert not w.any_up()


def test_an_answer_from_an_address_never_pinged_is_ignored() -> None:
    w = make()
    w.reply("192.0.2.9", 0.001, 0.1)
    assert drain(w) == []
