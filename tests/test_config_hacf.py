"""ha.cf as Heartbeat 3.0.6 reads it: every directive, its syntax, defaults and checks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hbd.config.hacf import DIRECTIVES, parse_bool, parse_hacf, parse_time_ms
from hbd.config.load import load_config
from hbd.config.model import HaCf, MediumKind
from hbd.core.auth import AuthMethod
from hbd.core.errors import ConfigError
from hbd.core.model import AgentKind, AutoFailback, WireFormat

from confkit import GOOD_HACF, config_dir, empty_agent_dirs, sample


def hacf(*lines: str) -> HaCf:
    """Parse the minimal good ha.cf followed by the given lines."""
    return parse_hacf(GOOD_HACF + "".join(f"{line}\n" for line in lines), "ha.cf")


def messages(h: HaCf) -> list[str]:
    return [w.message for w in h.warnings]


def error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_hacf(text, "ha.cf")
    return info.value


# --- the issue's example ----------------------------------------------------------------


def test_the_issues_example_directory_loads_as_it_is(tmp_path: Path) -> None:
    directory = sample("example", tmp_path)
    initd, ocf = empty_agent_dirs(tmp_path)

    config = load_config(str(directory), "ha-01", initd_dir=initd, ocf_root=ocf)

    h = config.hacf
    assert h.nodes == ("ha-01", "ha-02")
    assert (h.keepalive, h.deadtime, h.warntime, h.initdead, h.deadping) == (2, 30, 10, 120, 30)
    assert [m.path_id for m in h.media] == ["serial:/dev/ttyS0", "bcast:eth0"]
    assert h.media[0].baud == 19200 and h.media[1].port == 694
    assert [p.path_id for p in h.ping_nodes] == ["ping:192.168.0.254"]
    assert h.auto_failback is AutoFailback.ON
    assert h.watchdog == "/dev/watchdog"
    assert (h.logfile, h.debugfile, h.logfacility) == (
        "/var/log/ha-log",
        "/var/log/ha-debug",
        "local0",
    )
    assert h.respawn[0].user == "hacluster"
    assert h.respawn[0].argv == ("/usr/lib/heartbeat/ipfail",)
    assert (h.apiauth[0].group, h.apiauth[0].uids, h.apiauth[0].gids) == (
        "ipfail",
        ("hacluster",),
        ("haclient",),
    )
    assert config.authkeys.active.method is AuthMethod.SHA1
    assert config.authkeys.active.key == b"Correct-Horse-Battery-Staple-4711"
    (group,) = config.groups
    assert group.preferred == "ha-01"
    assert [r.spec for r in group.resources] == [
        "IPaddr::192.168.0.100",
        "IPaddr2::192.168.0.101/24/eth0/192.168.0.255",
        "webapp::fast",
    ]
    assert group.resources[2].agent is AgentKind.RESOURCE_D
    # The one thing hbd says about it: ipfail is not started, and why.
    assert [w.source for w in config.warnings] == [f"{directory}/ha.cf:17", f"{directory}/ha.cf"]
    assert "without an arbiter" in config.warnings[1].message
    assert "ipfail" in config.warnings[0].message
    assert "does not start it" in config.warnings[0].message


# --- every directive, with its effect -----------------------------------------------------

Getter = Callable[[HaCf], Any]

# directive -> (lines after the minimal good ha.cf, what to look at, what it must be)
EFFECTS: dict[str, tuple[tuple[str, ...], Getter, Any]] = {
    "node": (("node HA-03 ha-04",), lambda h: h.nodes, ("ha-01", "ha-02", "ha-03", "ha-04")),
    "keepalive": (("keepalive 500ms",), lambda h: h.keepalive, 0.5),
    "deadtime": (("deadtime 10",), lambda h: h.deadtime, 10.0),
    "warntime": (("warntime 7",), lambda h: h.warntime, 7.0),
    "initdead": (("initdead 60",), lambda h: h.initdead, 60.0),
    "deadping": (("deadping 20",), lambda h: h.deadping, 20.0),
    "udpport": (
        ("udpport 7000", "ucast eth1 10.0.0.2"),
        lambda h: (h.udpport, h.media[-1].port),
        (7000, 7000),
    ),
    "baud": (
        ("baud 115200", "serial /dev/ttyS1"),
        lambda h: (h.baud, h.media[-1].baud),
        (115200, 115200),
    ),
    "serial": (
        ("serial /dev/ttyS0 /dev/ttyUSB0",),
        lambda h: [m.path_id for m in h.media if m.kind is MediumKind.SERIAL],
        ["serial:/dev/ttyS0", "serial:/dev/ttyUSB0"],
    ),
    "bcast": (
        ("bcast eth1 eth2",),
        lambda h: [m.path_id for m in h.media],
        ["bcast:eth0", "bcast:eth1", "bcast:eth2"],
    ),
    "udp": (
        ("udp eth1",),
        lambda h: (h.media[-1].path_id, "old name of 'bcast'" in messages(h)[0]),
        ("bcast:eth1", True),
    ),
    "mcast": (
        ("mcast eth1 239.192.0.42 5405 2 1",),
        lambda h: (h.media[-1].path_id, h.media[-1].port, h.media[-1].ttl, h.media[-1].loop),
        ("mcast:eth1:239.192.0.42", 5405, 2, True),
    ),
    "ucast": (
        ("ucast eth1 10.0.0.2",),
        lambda h: (h.media[-1].path_id, h.media[-1].peer, h.media[-1].port),
        ("ucast:eth1:10.0.0.2", "10.0.0.2", 694),
    ),
    "mcast6": (
        # Heartbeat's own example line (mcast6.c): a transient link-local group
        ("mcast6 eth1 ff12::1:2:3:4 5405 1 0",),
        lambda h: [(m.path_id, m.port, m.ttl, m.loop) for m in h.media[1:]],
        [("mcast6:eth1:ff12::1:2:3:4", 5405, 1, False)],
    ),
    "ucast6": (
        # a link-local peer is reached on the line's device; the address is kept compressed
        ("udpport 7000", "ucast6 eth1 FE80:0::5054:ff:fe29:3949", "ucast6 eth2 fd00::7%eth2"),
        lambda h: [(m.path_id, m.peer, m.port) for m in h.media[1:]],
        [
            ("ucast6:eth1:fe80::5054:ff:fe29:3949", "fe80::5054:ff:fe29:3949", 7000),
            ("ucast6:eth2:fd00::7", "fd00::7", 7000),
        ],
    ),
    "ping6": (
        ("ping6 fd00::fe fe80::1%eth1", "ping 192.168.0.254"),
        lambda h: [p.path_id for p in h.ping_nodes],
        ["ping:fd00::fe", "ping:fe80::1%eth1", "ping:192.168.0.254"],
    ),
    "ping": (
        ("ping 192.168.0.254 192.168.0.253",),
        lambda h: [p.path_id for p in h.ping_nodes],
        ["ping:192.168.0.254", "ping:192.168.0.253"],
    ),
    "ping_group": (
        ("ping_group routers 10.0.0.1 10.0.0.2",),
        lambda h: (h.ping_groups[0].path_id, h.ping_groups[0].addresses),
        ("ping_group:routers", ("10.0.0.1", "10.0.0.2")),
    ),
    "autojoin": (("autojoin none",), lambda h: h.autojoin, "none"),
    "auto_failback": (
        # the minimal ha.cf says `auto_failback on`; a second line is the last word
        ("auto_failback off",),
        lambda h: h.auto_failback,
        AutoFailback.OFF,
    ),
    "watchdog": (("watchdog /dev/watchdog1",), lambda h: h.watchdog, "/dev/watchdog1"),
    "logfile": (("logfile /var/log/hbd.log",), lambda h: h.logfile, "/var/log/hbd.log"),
    "debugfile": (("debugfile /var/log/hbd.dbg",), lambda h: h.debugfile, "/var/log/hbd.dbg"),
    "logfacility": (("logfacility LOCAL7",), lambda h: h.logfacility, "local7"),
    "use_logd": (("use_logd off",), lambda h: (h.use_logd, h.warnings), (False, ())),
    "debug": (("debug 3",), lambda h: h.debug, 3),
    "realtime": (("realtime off",), lambda h: h.realtime, False),
    "rtprio": (("rtprio 5",), lambda h: h.rtprio, 5),
    "uuidfrom": (("uuidfrom nodename",), lambda h: h.uuidfrom, "nodename"),
    "hbgenmethod": (("hbgenmethod time",), lambda h: h.hbgenmethod, "time"),
    "msgfmt": (("msgfmt netstring",), lambda h: h.msgfmt, "netstring"),
    # Heartbeat reads a bare number here as milliseconds
    "max_rexmit_delay": (("max_rexmit_delay 500",), lambda h: h.max_rexmit_delay, 0.5),
    "hopfudge": (("hopfudge 3",), lambda h: h.hopfudge, 3),
    "respawn": (
        ("respawn hacluster /usr/lib/heartbeat/dopd -v",),
        lambda h: (h.respawn[0].user, h.respawn[0].argv, h.warnings),
        ("hacluster", ("/usr/lib/heartbeat/dopd", "-v"), ()),
    ),
    "apiauth": (
        ("apiauth default uid=hacluster,root gid=haclient",),
        lambda h: (h.apiauth[0].group, h.apiauth[0].uids, h.apiauth[0].gids),
        ("default", ("hacluster", "root"), ("haclient",)),
    ),
    "coredumps": (("coredumps false",), lambda h: h.coredumps, False),
    "cluster": (("cluster appliance",), lambda h: h.cluster, "appliance"),
    "wire": (("wire hbd",), lambda h: h.wire, WireFormat.HBD),
    "wire_accept": (
        ("wire hbd", "wire_accept hbd heartbeat"),
        lambda h: h.wire_accept,
        (WireFormat.HBD, WireFormat.HEARTBEAT),
    ),
    "accept_keys": (
        ("accept_keys 1 3",),
        lambda h: (h.accept_keys, h.accept_keys_line),
        ((1, 3), 4),
    ),
    "peer_watchdog_timeout": (("peer_watchdog_timeout 3",), lambda h: h.peer_watchdog_timeout, 3.0),
    "watchdog_timeout": (
        ("watchdog /dev/watchdog", "watchdog_timeout 40"),
        lambda h: h.watchdog_timeout,
        40.0,
    ),
    "adaptive_detector": (("adaptive_detector on",), lambda h: h.adaptive_detector, True),
    "resource_timeout": (
        ("resource_timeout stop 90", "resource_timeout status 1500ms"),
        lambda h: (h.resource_timeout_start, h.resource_timeout_stop, h.resource_timeout_status),
        (60.0, 90.0, 1.5),
    ),
    "metrics": (("metrics 127.0.0.1:9700",), lambda h: h.metrics, ("127.0.0.1", 9700)),
    "notify": (("notify /etc/hbd/notify.sh",), lambda h: h.notify, "/etc/hbd/notify.sh"),
    "notify_timeout": (("notify_timeout 2500ms",), lambda h: h.notify_timeout, 2.5),
    "rc_hooks": (("rc_hooks off",), lambda h: h.rc_hooks, False),
    "qnetd": (("qnetd [fd00::9]:5404",), lambda h: (h.qnetd, h.qnetd_port), ("fd00::9", 5404)),
    "qnetd_algorithm": (("qnetd q", "qnetd_algorithm LMS"), lambda h: h.qnetd_algorithm, "lms"),
    "qnetd_tls": (("qnetd q", "qnetd_tls on"), lambda h: h.qnetd_tls, True),
    "qnetd_tie_breaker": (("qnetd q", "qnetd_tie_breaker 2"), lambda h: h.qnetd_tie_breaker, "2"),
    "qnetd_nodeid": (
        ("qnetd q", "qnetd_nodeid ha-01 7"),
        lambda h: sorted(h.qnetd_node_ids().values()),
        [2, 7],
    ),
    "crm": (("crm off",), lambda h: h.warnings, ()),
    "pacemaker": (("pacemaker no",), lambda h: h.warnings, ()),
}

# Recognised but not carried out: the line loads with a warning saying what hbd does instead.
NOT_DONE: dict[str, tuple[str, str]] = {
    "nice_failback": ("nice_failback on", "read as 'auto_failback off'"),
    "stonith": ("stonith baytech /etc/ha.d/conf/stonith.baytech", "fences through the watchdog"),
    "stonith_host": ("stonith_host * baytech 10.0.0.3 mylogin mysecretpassword", "watchdog"),
    "compression": ("compression bz2", "never compressed"),
    "compression_threshold": ("compression_threshold 20", "never compressed"),
    "traditional_compression": ("traditional_compression on", "never compressed"),
    "crm_daemon_dir": ("crm_daemon_dir /usr/libexec/pacemaker", "Pacemaker"),
    "crmd_spawns_pengine": ("crmd_spawns_pengine off", "Pacemaker"),
    "record_config_changes": ("record_config_changes on", "Pacemaker"),
    "record_pengine_inputs": ("record_pengine_inputs on", "Pacemaker"),
    "enable_config_writes": ("enable_config_writes on", "Pacemaker"),
    "quorum_server": ("quorum_server qs.example.com", "qnetd HOST"),
    "conn_logd_time": ("conn_logd_time 60", "no logging daemon"),
    "log_badpack": ("log_badpack true", "dropped frames"),
    "syslogmsgfmt": ("syslogmsgfmt true", "log line format"),
    "coreroot": ("coreroot /var/lib/heartbeat/cores", "do not dump core"),
    "memreserve": ("memreserve 6500", "preallocate"),
    "normalpoll": ("normalpoll true", "poll"),
    "use_apphbd": ("use_apphbd true", "watchdog"),
    "env": ("env logpriority=debug", "respawned clients"),
}

# Recognised and refused: hbd will not silently run without what the line asked for.
REFUSED: dict[str, tuple[str, str]] = {
    "hbaping": ("hbaping fc-card-name", "'ping' or 'ping_group'"),
}


def test_every_directive_in_the_table_has_a_scenario() -> None:
    covered = set(EFFECTS) | set(NOT_DONE) | set(REFUSED)
    assert covered == set(DIRECTIVES)
    assert not (set(EFFECTS) & set(NOT_DONE)) and not (set(EFFECTS) & set(REFUSED))


@pytest.mark.parametrize("name", sorted(EFFECTS))
def test_directive_takes_effect(name: str) -> None:
    lines, get, expected = EFFECTS[name]
    assert get(hacf(*lines)) == expected


@pytest.mark.parametrize("name", sorted(NOT_DONE))
def test_directive_hbd_does_not_do_warns_what_it_does_instead(name: str) -> None:
    line, phrase = NOT_DONE[name]
    # nice_failback stands in for auto_failback, so the line goes where auto_failback was
    failback = "" if name == "nice_failback" else "auto_failback on\n"
    h = parse_hacf(f"node ha-01 ha-02\nbcast eth0\n{line}\n{failback}", "ha.cf")
    (warning,) = h.warnings
    assert warning.source == "ha.cf:3"
    assert phrase in warning.message


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_directive_hbd_refuses_says_what_to_use(name: str) -> None:
    line, phrase = REFUSED[name]
    e = error(GOOD_HACF + line + "\n")
    assert (e.file, e.line) == ("ha.cf", 4)
    assert phrase in e.message


def test_defaults_are_heartbeats_when_nothing_is_said() -> None:
    h = parse_hacf("node ha-01\nbcast eth0\nauto_failback on\n")
    assert (h.keepalive, h.deadtime, h.warntime, h.initdead, h.deadping) == (1, 30, 15, 30, 30)
    assert (h.udpport, h.baud, h.hopfudge, h.debug, h.max_rexmit_delay) == (694, 19200, 1, 0, 0.25)
    assert h.realtime and h.coredumps and not h.use_logd
    assert (h.logfacility, h.uuidfrom, h.hbgenmethod, h.msgfmt) == (
        "daemon",
        "file",
        "file",
        "classic",
    )
    assert h.wire is WireFormat.HEARTBEAT and not h.adaptive_detector
    assert h.watchdog is None and h.watchdog_timeout is None
    assert h.warnings == ()


@pytest.mark.parametrize(
    ("deadtime", "warntime", "initdead", "deadping"),
    [
        # measured on Heartbeat 3.0.6 with `cl_status hbparameter`
        ("30", 15.0, 30.0, 30.0),
        ("11", 5.5, 11.0, 11.0),  # deadtime > 10 s: initdead = deadtime
        ("10", 5.0, 20.0, 10.0),  # 6 s <= deadtime <= 10 s: initdead = 2 x deadtime
        ("6", 3.0, 12.0, 6.0),
        ("5", 2.5, 12.0, 5.0),  # deadtime < 6 s: initdead = 12 s
        ("3.5", 1.75, 12.0, 3.5),
    ],
)
def test_derived_defaults_follow_deadtime(
    deadtime: str, warntime: float, initdead: float, deadping: float
) -> None:
    h = hacf(f"deadtime {deadtime}")
    assert (h.warntime, h.initdead, h.deadping) == (warntime, initdead, deadping)


# --- syntax ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("10", 10_000),
        ("1.5", 1_500),
        (".25", 250),
        ("1500ms", 1_500),
        ("1500MS", 1_500),
        ("250msec", 250),
        ("200us", 0),  # cl_get_msec adds 0.5 and truncates: 0.2 ms -> 0
        ("499us", 0),
        ("500us", 1),
        ("1500usec", 2),
        ("0.0004", 0),
        (" 2 ", 2_000),
    ],
)
def test_time_syntax_rounds_like_cl_get_msec(text: str, ms: int) -> None:
    assert parse_time_ms(text) == ms


@pytest.mark.parametrize("text", ["", "fast", "10s", "1.", "1e3", "-1", "10 min", "1" * 400])
def test_what_is_not_a_time(text: str) -> None:
    assert parse_time_ms(text) is None


def test_a_time_that_rounds_to_zero_is_refused_where_it_is_written() -> None:
    e = error(GOOD_HACF + "keepalive 499us\n")
    assert e.line == 4
    assert "more than 0 ms; got '499us'" in e.message
    assert hacf("keepalive 500us").keepalive == 0.001


@pytest.mark.parametrize(
    ("text", "value"),
    [
        *[(t, True) for t in ("true", "on", "yes", "y", "1", "TRUE", "On", "Y")],
        *[(t, False) for t in ("false", "off", "no", "n", "0", "FALSE", "Off", "N")],
        *[(t, None) for t in ("", "2", "enabled", "yess", "tru")],
    ],
)
def test_booleans_as_cl_str_to_boolean(text: str, value: bool | None) -> None:
    assert parse_bool(text) is value


@pytest.mark.parametrize("word", ["true", "on", "yes", "y", "1"])
def test_every_true_spelling_turns_a_switch_on(word: str) -> None:
    assert hacf(f"realtime {word}", f"adaptive_detector {word}").adaptive_detector is True


@pytest.mark.parametrize("word", ["false", "off", "no", "n", "0"])
def test_every_false_spelling_turns_a_switch_off(word: str) -> None:
    h = hacf(f"realtime {word}", f"coredumps {word}")
    assert (h.realtime, h.coredumps) == (False, False)


def test_values_split_on_blanks_and_commas() -> None:
    h = parse_hacf(
        "node ha-01,ha-02\n"
        "bcast eth0, eth1\teth2\n"
        "ping 10.0.0.1,10.0.0.2 ,10.0.0.3\n"
        "auto_failback\ton\n"
    )
    assert h.nodes == ("ha-01", "ha-02")
    assert [m.device for m in h.media] == ["eth0", "eth1", "eth2"]
    assert [p.address for p in h.ping_nodes] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]


def test_comments_blank_lines_and_case() -> None:
    h = parse_hacf(
        "# two-box appliance\n"
        "\n"
        "   # indented comment\n"
        "KeepAlive 2   # seconds\n"
        "node ha-01 ha-02#ha-03 is not in this cluster\n"
        "bcast eth0 # eth1 is the storage network\n"
        "Auto_Failback ON\r\n"
    )
    assert h.keepalive == 2.0
    assert h.nodes == ("ha-01", "ha-02")
    assert [m.device for m in h.media] == ["eth0"]
    assert h.auto_failback is AutoFailback.ON


def test_udpport_and_baud_apply_to_the_media_after_them() -> None:
    h = parse_hacf(
        "node ha-01 ha-02\nauto_failback on\n"
        "udpport 700\n"
        "bcast eth0\n"
        "ucast eth1 10.0.0.2\n"
        "baud 57600\n"
        "serial /dev/ttyS0\n"
        "mcast eth2 239.192.0.1 5405 1 0\n"
    )
    ports = {m.path_id: m.port for m in h.media}
    assert ports["bcast:eth0"] == ports["ucast:eth1:10.0.0.2"] == 700
    assert ports["mcast:eth2:239.192.0.1"] == 5405  # mcast names its own port (as Heartbeat)
    assert h.media[2].baud == 57600
    assert h.warnings == ()


def test_udpport_after_a_medium_leaves_it_on_the_old_port_and_warns() -> None:
    h = parse_hacf("node ha-01 ha-02\nauto_failback on\nbcast eth0\nudpport 700\nbcast eth1\n")
    assert [m.port for m in h.media] == [694, 700]
    (warning,) = h.warnings
    assert warning.source == "ha.cf:4"
    assert "move udpport above the media lines" in warning.message


def test_udpport_after_mcast_only_does_not_warn_since_mcast_has_its_own_port() -> None:
    h = parse_hacf("node ha-01\nauto_failback on\nmcast eth0 239.0.0.1 694 1 0\nudpport 700\n")
    assert h.warnings == ()


def test_baud_after_a_serial_line_leaves_it_at_the_old_speed_and_warns() -> None:
    h = parse_hacf(
        "node ha-01 ha-02\nauto_failback on\nserial /dev/ttyS0\nbaud 9600\nserial /dev/ttyS1\n"
    )
    assert [m.baud for m in h.media] == [19200, 9600]
    (warning,) = h.warnings
    assert warning.source == "ha.cf:4"
    assert "move baud above the serial lines" in warning.message


# --- Heartbeat's checks ------------------------------------------------------------------------


def test_deadtime_must_be_more_than_twice_keepalive() -> None:
    e = error(GOOD_HACF + "keepalive 5\ndeadtime 10\n")
    assert e.line == 5 and "more than twice keepalive" in e.message
    assert hacf("keepalive 5", "deadtime 10001ms").deadtime == 10.001


def test_warntime_must_be_less_than_deadtime() -> None:
    e = error(GOOD_HACF + "warntime 30\n")
    assert e.line == 4 and "less than deadtime" in e.message
    assert hacf("warntime 29.999").warntime == 29.999


def test_warntime_not_above_keepalive_loads_but_warns() -> None:
    h = hacf("keepalive 2", "warntime 2")
    assert "every heartbeat will be reported late" in messages(h)[0]
    assert h.warnings[0].source == "ha.cf:5"


def test_initdead_must_be_at_least_deadtime() -> None:
    e = error(GOOD_HACF + "initdead 29\n")
    assert e.line == 4 and "at least deadtime" in e.message
    assert hacf("initdead 30").initdead == 30.0


def test_short_initdead_loads_but_warns() -> None:
    h = hacf("deadtime 4", "initdead 8")
    assert "initdead 8s may be too small" in messages(h)[0]


def test_deadping_must_be_more_than_twice_keepalive() -> None:
    e = error(GOOD_HACF + "keepalive 2\ndeadping 4\n")
    assert e.line == 5 and "deadping" in e.message


def test_at_least_one_node_and_one_medium() -> None:
    e = error("bcast eth0\nauto_failback on\n")
    assert e.line is None and "add 'node NAME'" in e.message
    e = error("node ha-01 ha-02\nauto_failback on\nping 10.0.0.1\n")
    assert e.line is None and "no heartbeat media" in e.message


def test_a_missing_auto_failback_warns_and_selects_legacy_as_heartbeat_does() -> None:
    h = parse_hacf("node ha-01 ha-02\nbcast eth0\n")
    assert h.auto_failback is AutoFailback.LEGACY
    (warning,) = h.warnings
    assert warning.source == "ha.cf"
    assert "add 'auto_failback on' or 'auto_failback off'" in warning.message


def test_auto_failback_legacy_warns_that_it_is_deprecated() -> None:
    h = parse_hacf("node ha-01\nbcast eth0\nauto_failback legacy\n")
    assert h.auto_failback is AutoFailback.LEGACY
    assert "deprecated" in messages(h)[0]


def test_nice_failback_off_means_legacy() -> None:
    h = parse_hacf("node ha-01\nbcast eth0\nnice_failback off\n")
    assert h.auto_failback is AutoFailback.LEGACY
    assert "read as 'auto_failback legacy'" in messages(h)[0]


def test_use_logd_on_loads_and_says_hbd_logs_itself() -> None:
    h = hacf("use_logd yes")
    assert h.use_logd is True
    assert "no logging daemon" in messages(h)[0]


def test_logfacility_none_turns_syslog_off() -> None:
    assert hacf("logfacility none").logfacility is None


def test_max_rexmit_delay_takes_units_too() -> None:
    assert hacf("max_rexmit_delay 1500us").max_rexmit_delay == 0.002


def test_the_local_node_must_be_listed(tmp_path: Path) -> None:
    directory = config_dir(tmp_path / "ha.d")
    with pytest.raises(ConfigError) as info:
        load_config(str(directory), "ha-03")
    assert info.value.file == f"{directory}/ha.cf"
    assert "this node 'ha-03' is not listed" in info.value.message
    assert "--node-name" in info.value.message


def test_a_line_count_is_a_count_of_newlines_even_with_form_feeds() -> None:
    # str.splitlines() also breaks at \f, \x1c-\x1e and \x85: the line would be misnamed
    e = error(GOOD_HACF + "# section\f# two\x85\nkeepalive fast\n")
    assert e.line == 5
    assert "'keepalive' needs a time" in e.message


def test_docs_directives_describes_every_directive() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "directives.md").read_text()
    missing = [name for name in DIRECTIVES if f"`{name}" not in doc]
    assert missing == []


@pytest.mark.parametrize(
    ("line", "phrase"),
    [
        ("resource_timeout reboot 5", "takes an operation and a time"),
        ("resource_timeout stop", "takes an operation and a time"),
        ("resource_timeout stop soon", "'soon' is not a time"),
        ("resource_timeout start 0", "'0' is not a time"),
    ],
)
def test_a_bad_resource_timeout_names_its_line(line: str, phrase: str) -> None:
    with pytest.raises(ConfigError, match=phrase) as e:
        parse_hacf(f"node alpha\nbcast eth0\n{line}\n", "ha.cf")
    assert e.value.line == 3


@pytest.mark.parametrize(
    ("lines", "phrase"),
    [
        ("wire_accept heartbeat", "wire_accept must list hbd"),
        ("wire_accept hbd morse", "takes heartbeat and/or hbd; got 'morse'"),
        ("wire_accept", "takes heartbeat and/or hbd"),
        ("accept_keys", "takes the authkeys indexes"),
        ("accept_keys one", "takes the authkeys indexes"),
        ("accept_keys 16", "0 to 15"),
    ],
)
def test_a_bad_wire_accept_or_accept_keys_names_its_line(lines: str, phrase: str) -> None:
    with pytest.raises(ConfigError, match=phrase) as e:
        parse_hacf(f"node alpha\nbcast eth0\n{lines}\n", "ha.cf")
    assert e.value.line == 3


def test_wire_accept_must_keep_the_format_this_node_sends() -> None:
    with pytest.raises(ConfigError, match="leaves out 'heartbeat'") as e:
        parse_hacf("node alpha\nbcast eth0\nwire_accept hbd\n", "ha.cf")
    assert e.value.line == 3


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        ("qnetd_tls on", "ha.cf:4: 'qnetd_tls' needs a 'qnetd HOST[:PORT]' line"),
        ("qnetd q:0", "ha.cf:4: 'qnetd q:0': the port must be a number from 1 to 65535, got '0'"),
        ("qnetd fd00::9", "ha.cf:4: 'qnetd fd00::9': write an IPv6 address in brackets"),
        ("qnetd [fd00::9", "ha.cf:4: 'qnetd [fd00::9': an IPv6 address goes in brackets"),
        ("qnetd q\nqnetd_tie_breaker 9", "ha.cf:5: qnetd_tie_breaker 9 is no node's id"),
        ("qnetd q\nqnetd_tie_breaker middle", "ha.cf:5: 'qnetd_tie_breaker' takes lowest"),
        ("qnetd q\nqnetd_nodeid beta 1", "ha.cf:5: beta and alpha have the same qnetd node id 1"),
        ("qnetd q\nqnetd_nodeid gamma 3", "ha.cf:5: 'qnetd_nodeid gamma': gamma is no 'node'"),
        ("qnetd q\nqnetd_nodeid alpha x", "ha.cf:5: 'qnetd_nodeid' takes a node name and its id"),
        ("qnetd q\nqnetd_algorithm 2nodelms", "ha.cf:5: 'qnetd_algorithm' takes one of"),
        ("qnetd q\nqnetd a", "ha.cf:5: 'qnetd' given twice (first on line 4)"),
        ("notify notify.sh", "ha.cf:4: 'notify notify.sh': give the script's absolute path"),
        ("notify /a\nnotify /b", "ha.cf:5: 'notify' given twice (first on line 4)"),
        ("notify_timeout 0", "ha.cf:4: 'notify_timeout' must be more than 0 ms"),
        ("notify_timeout soon", "ha.cf:4: 'notify_timeout' needs a time such as 10"),
        ("rc_hooks maybe", "ha.cf:4: 'rc_hooks' takes on/off"),
    ],
)
def test_qnetd_and_hook_mistakes_name_the_line(lines: str, error: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_hacf("node alpha beta\nbcast eth0\nauto_failback on\n" + lines + "\n")
    assert str(e.value).startswith(error)
