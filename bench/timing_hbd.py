"""Run hbd with the thread CPU time of its loop's main functions counted, by signal.

    python bench/timing_hbd.py OUT.json /path/to/hbd [hbd's arguments...]

SIGUSR1 starts counting, SIGUSR2 stops and writes OUT.json: for each function below, how
often it was called and the CPU time (time.thread_time_ns: user and kernel, the thread's
own) spent inside it, callees included, plus the thread's whole CPU time and the wall time
of the window. Unlike cProfile, which slows every Python call several times over, this
wraps only these few functions (a clock read on each side), so the figures are the live
node's. bench/idle.py `--timing DIR` starts hb1's hbd this way and prints where a turn's
time went. Needs hbd's own modules importable (the venv hbd runs from).
"""

from __future__ import annotations

import json
import runpy
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

# what a loop turn runs, outermost first (see bench/README.md, "idle.py")
MEASURED: dict[str, tuple[str, ...]] = {
    "asyncio.base_events:BaseEventLoop": ("_run_once",),
    "selectors:EpollSelector": ("select",),
    "hbd.shell.daemon:Daemon": (
        "_on_descriptors", "_on_timer", "_read", "_flush", "_arm", "_tick", "_next_deadline",
    ),
    "hbd.shell.daemon:DescriptorSet": ("readable",),
    "hbd.core.node:Node": ("receive_frame", "handle_timer", "frames_to_send", "get_timer"),
    "hbd.core.engine:Engine": ("receive_frame", "handle_timer", "frames_to_send"),
    "hbd.core.membership:Membership": ("receive", "get_timer"),
    "hbd.links.udp:UdpLink": ("on_readable", "send"),
    "hbd.links.serial:SerialLink": ("on_readable", "send"),
}  # fmt: skip


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit("usage: timing_hbd.py OUT.json HBD_SCRIPT [ARGS...]")
    out, script = Path(argv[0]), argv[1]
    # bench/ is sys.path[0] here, and its serial.py would shadow pyserial's `serial`
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if p and str(Path(p).resolve()) != here]
    counting = [False]
    stats: dict[str, list[int]] = {}
    clock = time.thread_time_ns

    def wrap(owner: type, name: str) -> None:
        original: Callable[..., Any] = getattr(owner, name)
        entry = stats.setdefault(f"{owner.__name__}.{name}", [0, 0])

        def counted(*args: Any, **kwargs: Any) -> Any:
            if not counting[0]:
                return original(*args, **kwargs)
            began = clock()
            try:
                return original(*args, **kwargs)
            finally:
                entry[0] += 1
                entry[1] += clock() - began

        setattr(owner, name, counted)

    import importlib

    for where, names in MEASURED.items():
        module, cls = where.split(":")
        owner = getattr(importlib.import_module(module), cls)
        for name in names:
            wrap(owner, name)
    window = [0, 0]  # thread CPU and wall clock (ns) at the start

    def start(_signum: int, _frame: FrameType | None) -> None:
        for entry in stats.values():
            entry[:] = [0, 0]
        window[:] = [clock(), time.monotonic_ns()]
        counting[0] = True

    def stop(_signum: int, _frame: FrameType | None) -> None:
        if not counting[0]:
            return
        counting[0] = False
        report = {
            "thread_ns": clock() - window[0],
            "wall_ns": time.monotonic_ns() - window[1],
            "functions": {k: {"calls": c, "ns": ns} for k, (c, ns) in stats.items() if c},
        }
        out.write_text(json.dumps(report, indent=1) + "\n")

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    sys.argv = [script, *argv[2:]]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
