"""Where the daemon keeps its files, by default (the command line can move each)."""

from __future__ import annotations

DEFAULT_RUN_DIR = "/run/hbd"  # the pid file and the control socket
DEFAULT_STATE_DIR = "/var/lib/hbd"  # the node uuid and the generation counter
