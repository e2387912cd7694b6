"""The agents people really run: Debian's resource-agents and Heartbeat's resource.d wrappers.

Nothing here is a test double except the DRBD disk (tests/agents/drbddisk, a loop device
that only one node may hold): `OCF::Dummy::d1` and `OCF::IPaddr2::vip` run the real OCF
agents from /usr/lib/ocf with their `conf/OCF/TYPE/INSTANCE` files, and
`Filesystem::DEV::DIR::ext4` runs Heartbeat's own /etc/ha.d/resource.d/Filesystem wrapper
(as an existing /etc/ha.d carries it), which mounts an ext4 image through the OCF
Filesystem agent.

The scenario at the end is the group from the issue, on two hbd nodes in namespaces:
`alpha 10.80.0.100 drbddisk::r0 Filesystem::... OCF::IPaddr2::vip OCF::Dummy::d1
recorder::web` starts on alpha left to right, moves to beta when alpha is stopped (alpha
stops right to left: the filesystem is unmounted before the disk is given up, or the
stand-in DRBD refuses), and leaves nothing behind when beta is stopped too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hbd.config.load import load_config
from hbd.core.resources import GroupStarted, GroupStopped, ResourceManager, RunAgent
from hbd.effects.addresses import BuiltinAgents, PyrouteAddressManager
from hbd.effects.agents import ScriptRunner, carry_out

import netns
from cluster import Cluster, Timing, build
from netns import requires_root, requires_socat

ROOMY = Timing(keepalive=500, deadtime=3000, warntime=1500, initdead=6000)

OCF_AGENTS = Path("/usr/lib/ocf/resource.d/heartbeat")
HB_FILESYSTEM = Path("/etc/ha.d/resource.d/Filesystem")
needs_agents = pytest.mark.skipif(
    not (OCF_AGENTS / "Dummy").exists() or not HB_FILESYSTEM.exists(),
    reason="needs Debian's resource-agents and heartbeat packages (bash .ci/install)",
)
pytestmark = [needs_agents]

HACF = "node alpha beta\nbcast eth0\nauto_failback on\n"
AUTHKEYS = "auth 1\n1 sha1 real-agents\n"


def write_config(directory: Path, haresources: str, instances: dict[str, str]) -> Path:
    """A config dir: ha.cf, authkeys, haresources and conf/OCF/TYPE/INSTANCE files."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ha.cf").write_text(HACF)
    (directory / "authkeys").write_text(AUTHKEYS)
    os.chmod(directory / "authkeys", 0o600)
    (directory / "haresources").write_text(haresources)
    for name, text in instances.items():
        path = directory / "conf" / "OCF" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return directory


async def settle(rm: ResourceManager, runner: ScriptRunner) -> list[object]:
    """Run every operation the resource manager asks for; the events it gave."""
    while (action := rm.next_action()) is not None:
        assert isinstance(action, RunAgent)
        result = await carry_out(runner, rm, action)
        assert not result.timed_out, action
    return list(iter(rm.next_event, None))


def start_and_stop(directory: Path, runner: ScriptRunner, while_up: object = None) -> None:
    """Load `directory` as alpha, probe, start its one group, call `while_up`, stop it."""
    config = load_config(str(directory), "alpha")
    (group,) = config.groups

    async def scenario() -> None:
        rm = ResourceManager(config.groups, node_name="alpha")
        rm.probe_all(time.monotonic())
        await settle(rm, runner)
        assert rm.is_stopped(group.name), rm.snapshot()
        rm.acquire(group.name, time.monotonic())
        assert GroupStarted(group.name) in await settle(rm, runner), rm.snapshot()
        if callable(while_up):
            while_up()
        rm.release(group.name, time.monotonic())
        assert GroupStopped(group.name) in await settle(rm, runner), rm.snapshot()

    asyncio.run(scenario())


def test_ocf_dummy_runs_with_its_instance_file(tmp_path: Path) -> None:
    state = tmp_path / "d1.state"
    directory = write_config(
        tmp_path / "ha.d",
        "alpha OCF::Dummy::d1\n",
        {"Dummy/d1": f"# the Dummy agent's one parameter\nOCF_RESKEY_state={state}\n"},
    )

    def up() -> None:
        assert state.exists()  # Dummy's start touched the state file it was given

    start_and_stop(directory, ScriptRunner(ha_dir=str(directory)), up)
    assert not state.exists()


@pytest.mark.root
@requires_root
def test_ocf_ipaddr2_adds_the_address_in_a_namespace_and_removes_it(tmp_path: Path) -> None:
    vip = "10.77.0.61"
    directory = write_config(
        tmp_path / "ha.d",
        "alpha OCF::IPaddr2::vip\n",
        {"IPaddr2/vip": f"OCF_RESKEY_ip={vip}\nOCF_RESKEY_cidr_netmask=24\nOCF_RESKEY_nic=eth0\n"},
    )
    with (
        netns.namespace("node") as node,
        netns.namespace("peer") as peer,
        netns.veth_pair(node, peer, "10.77.0.0/24"),
    ):

        def up() -> None:
            assert f"inet {vip}/24" in node.ip("-4", "-o", "addr", "show", "eth0").stdout
            assert peer.exec("ping", "-c", "1", "-W", "2", vip, check=False).returncode == 0

        runner = ScriptRunner(BuiltinAgents(PyrouteAddressManager()), ha_dir=str(directory))
        with node.entered():  # the agent's `ip` commands run in the node's namespace
            start_and_stop(directory, runner, up)
        assert vip not in node.ip("-4", "-o", "addr", "show").stdout


# -- the group on two daemons ------------------------------------------------------

VIP = "10.80.0.100"  # the bare address: hbd's built-in IPaddr
VIP2 = "10.80.0.101"  # OCF::IPaddr2::vip


@contextlib.contextmanager
def replicated_disk(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """An ext4 image (the DRBD disk's contents) and the path drbddisk links its device at;
    every loop device left on the image is detached on exit."""
    image = tmp_path / "r0.img"
    with open(image, "wb") as f:
        f.truncate(16 << 20)
    netns.run("mkfs.ext4", "-q", "-F", "-L", "hbd-r0", str(image))
    try:
        yield image, tmp_path / "drbd0"
    finally:
        for line in netns.run("losetup", "-j", str(image), check=False).stdout.splitlines():
            netns.run("losetup", "-d", line.split(":", 1)[0], check=False)


def mounted(c: Cluster, node: str, mountpoint: Path) -> bool:
    """Whether `mountpoint` is mounted in the mount namespace of node's hbd (and so of the
    agents it runs: `ip netns exec` gives each daemon its own)."""
    mounts = Path(f"/proc/{c[node].pid}/mounts").read_text().split("\n")
    return any(line.split(" ")[1:2] == [str(mountpoint)] for line in mounts if line)


def agent_calls(c: Cluster, node: str) -> list[str]:
    log = c[node].root / "calls.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [line for line in lines if not line.endswith(" status")]


@pytest.mark.root
@pytest.mark.slow
@requires_root
@requires_socat
@pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="needs e2fsprogs")
def test_the_drbd_filesystem_ocf_group_starts_in_order_moves_and_stops_clean(
    tmp_path: Path,
) -> None:
    with replicated_disk(tmp_path) as (image, device):
        data = tmp_path / "data"
        data.mkdir()
        group = f"IPaddr::{VIP}"
        haresources = (
            f"alpha {VIP} drbddisk::r0 Filesystem::{device}::{data}::ext4 \\\n"
            "      OCF::IPaddr2::vip OCF::Dummy::d1 recorder::web\n"
        )
        # the agents' order is the claim, not detection: a deadtime of 3 s, so a machine
        # pause in CI (a 1 s stall of alpha's loop, seen once) is not a self-fence
        with build(
            tmp_path, timing=ROOMY, haresources=haresources, agents=("recorder", "drbddisk")
        ) as c:
            for node in c.nodes.values():
                node.install_agent(HB_FILESYSTEM)  # Heartbeat's wrapper, as /etc/ha.d has it
                rsc = node.root / "rsc"
                rsc.mkdir()
                for inst, text in {
                    "IPaddr2/vip": f"OCF_RESKEY_ip={VIP2}\nOCF_RESKEY_cidr_netmask=24\n",
                    "Dummy/d1": f"OCF_RESKEY_state={rsc}/d1.state\n",
                }.items():
                    path = node.config_dir / "conf" / "OCF" / inst
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(text)
                node.env.update(
                    HBD_TEST_LOG=str(node.root / "calls.log"),
                    HBD_TEST_STATE=str(rsc),
                    HBD_TEST_DRBD_IMG=str(image),
                    HBD_TEST_DRBD_DEV=str(device),
                )
            with c.vip_sampler(VIP) as vs:
                c.start()
                c.wait_all_up(15)
                took = c.wait_holder(group, "alpha", timeout=20)
                print(f"TIMING both up -> alpha holds the group {took:.2f} s")
                g = c["alpha"].group(group)
                assert g is not None
                assert [(r["name"], r["state"], r["rc"]) for r in g["resources"]] == [
                    (f"IPaddr::{VIP}", "started", 0),
                    ("drbddisk::r0", "started", 0),
                    (f"Filesystem::{device}::{data}::ext4", "started", 0),
                    ("OCF::IPaddr2::vip", "started", 0),
                    ("OCF::Dummy::d1", "started", 0),
                    ("recorder::web", "started", 0),
                ]
                assert agent_calls(c, "alpha") == ["drbddisk r0 start", "web start"]
                assert agent_calls(c, "beta") == []  # beta only probed
                assert mounted(c, "alpha", data) and not mounted(c, "beta", data)
                assert f"inet {VIP2}/24" in c["alpha"].ns.ip("-4", "-o", "addr").stdout
                assert (c["alpha"].root / "rsc" / "d1.state").exists()

                # a clean stop of alpha hands the group to beta: right to left, then left
                # to right (the stand-in DRBD refuses to let go of a mounted disk)
                vs.mark("SIGTERM alpha")
                beta_log = c["beta"].log_mark()
                started = time.monotonic()
                c["alpha"].signal(15)
                c.wait_holder(group, "beta", timeout=20, nodes=("beta",))
                print(f"TIMING SIGTERM alpha -> beta holds {time.monotonic() - started:.2f} s")
                assert c["alpha"].stop() == 0
                assert agent_calls(c, "alpha")[2:] == ["web stop", "drbddisk r0 stop"]
                assert agent_calls(c, "beta") == ["drbddisk r0 start", "web start"]
                assert mounted(c, "beta", data)
                assert f"inet {VIP2}/24" in c["beta"].ns.ip("-4", "-o", "addr").stdout
                assert VIP2 not in c["alpha"].ns.ip("-4", "-o", "addr").stdout
                assert not (c["alpha"].root / "rsc" / "d1.state").exists()

                # beta stops too, with nobody to hand over to: everything is released
                assert c["beta"].stop(timeout=30) == 0
                assert agent_calls(c, "beta")[2:] == ["web stop", "drbddisk r0 stop"]
            vs.assert_never_dual()
            beta_text = c["beta"].log()[beta_log:]
            assert "rc=6" not in beta_text and "rc=5" not in beta_text
            for node in c.nodes.values():
                assert VIP2 not in node.ns.ip("-4", "-o", "addr").stdout
                assert not any((node.root / "rsc").iterdir())
            assert not device.exists()
            assert netns.run("losetup", "-j", str(image)).stdout == ""
