"""haresources: groups of resources, each resolved to an agent when the file is loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from hbd.config.haresources import AgentDirs, parse_haresources
from hbd.config.load import load_config
from hbd.core.errors import ConfigError
from hbd.core.model import AgentKind, ResourceGroup

from confkit import config_dir, empty_agent_dirs, make_executable

NODES = ("ha-01", "ha-02")


@pytest.fixture
def dirs(tmp_path: Path) -> AgentDirs:
    """A config dir, init.d and OCF root of the test's own, all empty to begin with."""
    (tmp_path / "ha.d" / "resource.d").mkdir(parents=True)
    initd, ocf = empty_agent_dirs(tmp_path)
    return AgentDirs(str(tmp_path / "ha.d"), initd, ocf)


def parse(text: str, dirs: AgentDirs) -> tuple[ResourceGroup, ...]:
    return parse_haresources(text, NODES, dirs, "haresources")


def error(text: str, dirs: AgentDirs) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(text, dirs)
    return info.value


def test_bare_ip_means_ipaddr_and_the_full_ipaddr_form_is_kept(dirs: AgentDirs) -> None:
    (group,) = parse("ha-01 10.0.0.5 IPaddr::10.0.0.6/24/eth0/10.0.0.255\n", dirs)
    first, second = group.resources
    assert (first.name, first.args, first.agent) == ("IPaddr", ("10.0.0.5",), AgentKind.BUILTIN)
    assert first.agent_path is None
    assert second.spec == "IPaddr::10.0.0.6/24/eth0/10.0.0.255"
    assert group.name == "IPaddr::10.0.0.5"  # named by its first resource, as Heartbeat


def test_bare_ip_may_carry_prefix_interface_and_broadcast(dirs: AgentDirs) -> None:
    (group,) = parse("ha-02 10.0.0.5/24/eth1/10.0.0.255\n", dirs)
    assert group.preferred == "ha-02"
    assert group.resources[0].spec == "IPaddr::10.0.0.5/24/eth1/10.0.0.255"


def test_continuations_and_comments(dirs: AgentDirs) -> None:
    groups = parse(
        "# the web group, preferred on ha-01\n"
        "HA-01 10.0.0.5 \\\n"
        "      IPaddr2::10.0.0.6/24 \\   \n"
        "      SendArp::10.0.0.5/eth0   # announce it\n"
        "\n"
        "ha-02 10.0.0.9 # a second group\n",
        dirs,
    )
    assert [(g.preferred, g.source) for g in groups] == [
        ("ha-01", "haresources:2"),
        ("ha-02", "haresources:6"),
    ]
    assert [r.spec for r in groups[0].resources] == [
        "IPaddr::10.0.0.5",
        "IPaddr2::10.0.0.6/24",
        "SendArp::10.0.0.5/eth0",
    ]
    assert all(r.source == "haresources:2" for r in groups[0].resources)


def test_name_with_arguments_split_on_double_colons(dirs: AgentDirs) -> None:
    script = make_executable(Path(dirs.config_dir) / "resource.d" / "Filesystem")
    (group,) = parse("ha-01 Filesystem::/dev/sdb1::/srv::ext4\n", dirs)
    (fs,) = group.resources
    assert fs.name == "Filesystem"
    assert fs.args == ("/dev/sdb1", "/srv", "ext4")
    assert (fs.agent, fs.agent_path) == (AgentKind.RESOURCE_D, str(script))


def test_resource_d_comes_before_init_d(dirs: AgentDirs) -> None:
    ours = make_executable(Path(dirs.config_dir) / "resource.d" / "apache")
    make_executable(Path(dirs.initd_dir) / "apache")
    make_executable(Path(dirs.initd_dir) / "postfix")
    (group,) = parse("ha-01 apache postfix\n", dirs)
    apache, postfix = group.resources
    assert (apache.agent, apache.agent_path) == (AgentKind.RESOURCE_D, str(ours))
    assert (postfix.agent, postfix.agent_path) == (
        AgentKind.INIT_D,
        str(Path(dirs.initd_dir) / "postfix"),
    )


def test_a_script_that_is_not_executable_is_not_an_agent(dirs: AgentDirs) -> None:
    (Path(dirs.config_dir) / "resource.d" / "halfdone").write_text("#!/bin/sh\n")
    e = error("ha-01 halfdone\n", dirs)
    assert e.line == 1
    assert f"no executable {dirs.config_dir}/resource.d/halfdone" in e.message


def test_ocf_resource_finds_its_agent_and_instance_settings(dirs: AgentDirs) -> None:
    agent = make_executable(Path(dirs.ocf_root) / "resource.d" / "heartbeat" / "Dummy")
    settings = Path(dirs.config_dir) / "conf" / "OCF" / "Dummy" / "one"
    settings.parent.mkdir(parents=True)
    settings.write_text("# the state file\nOCF_RESKEY_state=/run/dummy-one.state\n")
    (group,) = parse("ha-01 OCF::Dummy::one\n", dirs)
    (res,) = group.resources
    assert (res.agent, res.agent_path, res.args) == (AgentKind.OCF, str(agent), ("Dummy", "one"))
    assert res.settings == (("OCF_RESKEY_state", "/run/dummy-one.state"),)


def test_ocf_prefers_the_heartbeat_provider(dirs: AgentDirs) -> None:
    root = Path(dirs.ocf_root) / "resource.d"
    make_executable(root / "acme" / "Dummy")
    wanted = make_executable(root / "heartbeat" / "Dummy")
    settings = Path(dirs.config_dir) / "conf" / "OCF" / "Dummy" / "one"
    settings.parent.mkdir(parents=True)
    settings.write_text("")
    (group,) = parse("ha-01 OCF::Dummy::one\n", dirs)
    assert group.resources[0].agent_path == str(wanted)


def test_ocf_without_instance_settings_names_the_file_to_create(dirs: AgentDirs) -> None:
    make_executable(Path(dirs.ocf_root) / "resource.d" / "heartbeat" / "Dummy")
    e = error("\nha-01 OCF::Dummy::two\n", dirs)
    assert e.line == 2
    assert f"{dirs.config_dir}/conf/OCF/Dummy/two not found" in e.message


def test_unresolvable_resource_is_an_error_naming_its_line(dirs: AgentDirs) -> None:
    e = error("ha-01 10.0.0.5\n# db\nha-02 10.0.0.6 \\\n   postgresql\n", dirs)
    assert (e.file, e.line) == ("haresources", 3)
    assert "resource 'postgresql' not found" in e.message
    assert f"{dirs.initd_dir}/postgresql" in e.message


def test_the_same_resource_in_two_groups_is_refused(dirs: AgentDirs) -> None:
    e = error("ha-01 10.0.0.5\nha-02 IPaddr::10.0.0.5\n", dirs)
    assert e.line == 2
    assert "already in a group at haresources:1" in e.message


def test_load_config_resolves_against_the_configuration_directory(tmp_path: Path) -> None:
    directory = config_dir(tmp_path / "ha.d", haresources="ha-01 10.0.0.5 myapp::start-fast\n")
    make_executable(directory / "resource.d" / "myapp")
    initd, ocf = empty_agent_dirs(tmp_path)
    config = load_config(str(directory), "ha-02", initd_dir=initd, ocf_root=ocf)
    assert config.groups[0].resources[1].agent_path == f"{directory}/resource.d/myapp"
    # nothing wrong with the files; what the set-up leaves open is said (docs/policy.md)
    assert [w.message.split(":")[0] for w in config.warnings] == [
        "two nodes without an arbiter",
        "no ping nodes",
        "no watchdog",
    ]


def test_no_haresources_file_is_allowed_but_said(tmp_path: Path) -> None:
    directory = config_dir(tmp_path / "ha.d")
    config = load_config(str(directory), "ha-01")
    assert config.groups == ()
    assert [str(w) for w in config.warnings] == [
        f"{directory}/haresources: warning: no haresources file: this cluster runs no groups"
    ]


def test_ipv6_service_addresses_keep_the_double_colon_heartbeat_would_split(
    dirs: AgentDirs,
) -> None:
    (group,) = parse("ha-01 IPv6addr::fd00::5/64/eth0 IPaddr2::2001:db8::6 10.0.0.7\n", dirs)
    assert [(r.name, r.args, r.agent) for r in group.resources] == [
        ("IPv6addr", ("fd00::5/64/eth0",), AgentKind.BUILTIN),
        ("IPaddr2", ("2001:db8::6",), AgentKind.BUILTIN),
        ("IPaddr", ("10.0.0.7",), AgentKind.BUILTIN),
    ]
    assert group.name == "IPv6addr::fd00::5/64/eth0"
    # an IPv4 argument split on '::' is still two arguments, and an error
    assert "takes one argument" in error("ha-01 IPaddr2::10.0.0.5::eth0\n", dirs).message
