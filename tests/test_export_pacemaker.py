"""`hbctl export pacemaker`: the crm output is loaded into an offline CIB with Debian's crm
shell and checked by Pacemaker's own crm_verify; the pcs output is checked by structure
(pcs is not installed here)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hbd.commands.export import ExportError, export_pacemaker
from hbd.core.model import AgentKind, AutoFailback, Resource, ResourceGroup


def res(name: str, *args: str, agent: AgentKind = AgentKind.RESOURCE_D, line: int = 4) -> Resource:
    path = {
        AgentKind.BUILTIN: None,
        AgentKind.RESOURCE_D: f"/etc/ha.d/resource.d/{name}",
        AgentKind.INIT_D: f"/etc/init.d/{name}",
        AgentKind.OCF: f"/usr/lib/ocf/resource.d/pacemaker/{name}",
    }[agent]
    return Resource(name, args, agent, path, f"haresources:{line}")


GROUPS = (
    ResourceGroup(
        "alpha",
        (
            res("IPaddr", "10.0.0.10/24/eth0:web", agent=AgentKind.BUILTIN),
            res("Filesystem", "/dev/sdb1", "/srv/www", "ext4"),
            res("postgresql", agent=AgentKind.INIT_D),
        ),
        "haresources:4",
    ),
    ResourceGroup(
        "beta",
        (
            res("IPaddr2", "10.0.0.20", agent=AgentKind.BUILTIN, line=5),
            Resource(  # OCF::Dummy::db1, conf/OCF/Dummy/db1 setting OCF_RESKEY_state
                "OCF",
                ("Dummy", "db1"),
                AgentKind.OCF,
                "/usr/lib/ocf/resource.d/pacemaker/Dummy",
                "haresources:5",
                (("OCF_RESKEY_state", "/run/db one"), ("helper", "not a parameter")),
            ),
            res("SendArp", "10.0.0.21/eth1", line=5),
        ),
        "haresources:5",
    ),
)

needs_crm = pytest.mark.skipif(
    shutil.which("crm") is None or shutil.which("crm_verify") is None,
    reason="needs crmsh and pacemaker-cli-utils",
)


def load_into_cib(tmp_path: Path, text: str) -> ET.Element:
    """Load crm configuration into an empty offline CIB (nodes declared, as corosync
    would); crm_verify must accept the result. Returns the CIB's <configuration>."""
    cib = tmp_path / "cib.xml"
    cib.write_text(
        subprocess.run(["cibadmin", "--empty"], capture_output=True, text=True, check=True).stdout
    )
    crm_file = tmp_path / "config.crm"
    crm_file.write_text("node alpha\nnode beta\n" + text)
    env = {**os.environ, "CIB_file": str(cib), "HOME": str(tmp_path)}
    load = subprocess.run(
        ["crm", "configure", "load", "update", str(crm_file)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert load.returncode == 0, load.stdout + load.stderr
    verify = subprocess.run(
        ["crm_verify", "--xml-file", str(cib), "-V"], capture_output=True, text=True, timeout=60
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    config = ET.parse(cib).getroot().find("configuration")
    assert config is not None
    return config


def params(prim: ET.Element) -> dict[str, str]:
    return {nv.get("name", ""): nv.get("value", "") for nv in prim.iter("nvpair")
            if nv.get("name") not in ("resource-stickiness",)}  # fmt: skip


@pytest.mark.slow
@needs_crm
def test_crm_export_loads_and_passes_crm_verify_with_the_groups_as_written(tmp_path: Path) -> None:
    config = load_into_cib(tmp_path, export_pacemaker(GROUPS, AutoFailback.ON, "crm"))
    groups = config.findall("./resources/group")
    assert [g.get("id") for g in groups] == ["grp_ip_10.0.0.10", "grp_ip_10.0.0.20"]
    web, db = groups
    members = [(p.get("id"), p.get("class"), p.get("provider"), p.get("type")) for p in web]
    assert members == [
        ("ip_10.0.0.10", "ocf", "heartbeat", "IPaddr2"),
        ("fs_srv_www", "ocf", "heartbeat", "Filesystem"),
        ("postgresql", "lsb", None, "postgresql"),
    ]
    assert params(web[0]) == {
        "ip": "10.0.0.10",
        "cidr_netmask": "24",
        "nic": "eth0",
        "iflabel": "web",
    }
    assert params(web[1]) == {"device": "/dev/sdb1", "directory": "/srv/www", "fstype": "ext4"}
    assert [(p.get("type"), p.get("provider")) for p in db] == [
        ("IPaddr2", "heartbeat"), ("Dummy", "pacemaker"), ("SendArp", "heartbeat"),
    ]  # fmt: skip
    assert params(db[1]) == {"state": "/run/db one"}
    assert params(db[2]) == {"ip": "10.0.0.21", "nic": "eth1"}
    ops = {(o.get("name"), o.get("timeout")) for o in web[0].iter("op")}
    assert ops == {("start", "60s"), ("stop", "60s"), ("monitor", "20s")}
    locations = {(c.get("rsc"), c.get("node"), c.get("score")) for c in config.iter("rsc_location")}
    assert locations == {("grp_ip_10.0.0.10", "alpha", "100"), ("grp_ip_10.0.0.20", "beta", "100")}
    sticky = [
        nv.get("value") for nv in config.iter("nvpair") if nv.get("name") == "resource-stickiness"
    ]
    assert sticky == ["0"]  # auto_failback on: groups go home
    props = {nv.get("name"): nv.get("value") for nv in config.findall("./crm_config//nvpair")}
    assert props["stonith-enabled"] == "false"


@pytest.mark.slow
@needs_crm
def test_auto_failback_off_makes_groups_stickier_than_their_location(tmp_path: Path) -> None:
    config = load_into_cib(tmp_path, export_pacemaker(GROUPS[:1], AutoFailback.OFF, "crm"))
    sticky = [
        nv.get("value") for nv in config.iter("nvpair") if nv.get("name") == "resource-stickiness"
    ]
    location = next(config.iter("rsc_location")).get("score")
    assert sticky == ["1000"] and location is not None and int(str(sticky[0])) > int(location)


def test_pcs_export_is_a_shell_script_of_pcs_commands_in_group_order() -> None:
    text = export_pacemaker(GROUPS, AutoFailback.LEGACY, "pcs")
    assert subprocess.run(["sh", "-n"], input=text, text=True).returncode == 0
    assert "auto_failback legacy is exported as on" in text
    cmds = [shlex.split(line) for line in text.splitlines() if line.startswith("pcs ")]
    creates = [c for c in cmds if c[1:3] == ["resource", "create"]]
    assert [(c[3], c[4], c[-1]) for c in creates] == [
        ("ip_10.0.0.10", "ocf:heartbeat:IPaddr2", "grp_ip_10.0.0.10"),
        ("fs_srv_www", "ocf:heartbeat:Filesystem", "grp_ip_10.0.0.10"),
        ("postgresql", "lsb:postgresql", "grp_ip_10.0.0.10"),
        ("ip_10.0.0.20", "ocf:heartbeat:IPaddr2", "grp_ip_10.0.0.20"),
        ("db1", "ocf:pacemaker:Dummy", "grp_ip_10.0.0.20"),
        ("arp_10.0.0.21", "ocf:heartbeat:SendArp", "grp_ip_10.0.0.20"),
    ]
    assert "state=/run/db one" in creates[4]
    assert ["pcs", "constraint", "location", "grp_ip_10.0.0.20", "prefers", "beta=100"] in cmds
    assert ["pcs", "resource", "defaults", "update", "resource-stickiness=0"] in cmds
    assert ["pcs", "property", "set", "stonith-enabled=false"] in cmds


def test_scripts_without_an_ocf_twin_become_lsb_with_a_note() -> None:
    g = ResourceGroup("alpha", (res("drbddisk", "r0"),), "haresources:7")
    text = export_pacemaker([g], AutoFailback.ON, "crm")
    assert "# drbddisk::r0 was a Heartbeat resource.d script with no OCF twin" in text
    assert "primitive drbddisk lsb:drbddisk op start" in text


def test_unexportable_resources_name_their_line() -> None:
    bad_ip = ResourceGroup("alpha", (res("IPaddr", "10.0.0", agent=AgentKind.BUILTIN),), "h:9")
    with pytest.raises(ExportError, match=r"haresources:4: IPaddr::10.0.0: .*not an IPv4"):
        export_pacemaker([bad_ip], AutoFailback.ON, "crm")
    too_many = ResourceGroup("alpha", (res("IPsrcaddr", "10.0.0.1", "extra", line=8),), "h:8")
    with pytest.raises(ExportError, match=r"haresources:8: IPsrcaddr::10.0.0.1::extra"):
        export_pacemaker([too_many], AutoFailback.ON, "pcs")
    with pytest.raises(ValueError, match="unknown export format 'xml'"):
        export_pacemaker(GROUPS, AutoFailback.ON, "xml")


def test_duplicate_names_get_distinct_ids() -> None:
    g1 = ResourceGroup("alpha", (res("postgresql", agent=AgentKind.INIT_D),), "h:1")
    g2 = ResourceGroup("beta", (res("postgresql", agent=AgentKind.INIT_D),), "h:2")
    text = export_pacemaker([g1, g2], AutoFailback.ON, "crm")
    assert "group grp_postgresql postgresql\n" in text
    assert "group grp_postgresql-2 postgresql-2\n" in text
