"""Test tools shipped with hbd: the deterministic cluster simulator and a FUSE watchdog."""

from hbd.testing.sim import FakeClock, LinkParams, SimCluster

__all__ = ["FakeClock", "LinkParams", "SimCluster"]
