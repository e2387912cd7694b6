"""Run hbd under cProfile switched on and off by signal: the steady state, not the start.

    python bench/cprofile_hbd.py OUT.prof /path/to/hbd [hbd's arguments...]

SIGUSR1 starts a profile, SIGUSR2 stops it and writes it to OUT.prof (pstats format);
hbd itself uses neither. bench/idle.py `--cprofile DIR` starts hb1's hbd this way, sends
SIGUSR1 when the window opens and SIGUSR2 when it closes, and prints where the time went.
cProfile slows every Python call several times over: take timings from a run without it.
"""

from __future__ import annotations

import cProfile
import runpy
import signal
import sys
from pathlib import Path
from types import FrameType


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit("usage: cprofile_hbd.py OUT.prof HBD_SCRIPT [ARGS...]")
    out, script = argv[0], argv[1]
    profile: list[cProfile.Profile] = []

    def start(_signum: int, _frame: FrameType | None) -> None:
        if not profile:
            profile.append(cProfile.Profile())
            profile[0].enable()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        if profile:
            p = profile.pop()
            p.disable()
            p.dump_stats(out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    # bench/ is sys.path[0] here, and its serial.py would shadow pyserial's `serial`
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if p and str(Path(p).resolve()) != here]
    sys.argv = [script, *argv[2:]]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
