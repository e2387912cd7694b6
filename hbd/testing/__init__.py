"""Test tools shipped with hbd: the deterministic cluster simulator and a FUSE watchdog."""
