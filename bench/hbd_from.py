"""Run the hbd script with another checkout's packages first on sys.path.

    python bench/hbd_from.py TREE /path/to/hbd [hbd's arguments...]

TREE is a checkout of this repository (`git worktree add /tmp/base HEAD~3`): its `hbd` and
`links` packages are imported instead of the installed ones, so bench/idle.py
`--baseline TREE` runs an older hbd beside the current one in the same run, where the
machine's state (C-states, frequency, the other clusters) is the same for both.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit("usage: hbd_from.py TREE HBD_SCRIPT [ARGS...]")
    tree, script = Path(argv[0]).resolve(), argv[1]
    if not (tree / "hbd" / "__init__.py").is_file():
        sys.exit(f"hbd_from.py: {tree} holds no hbd package (hbd/__init__.py)")
    # bench/ is sys.path[0] here, and its serial.py would shadow pyserial's `serial`
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [str(tree)] + [p for p in sys.path if p and str(Path(p).resolve()) != here]
    sys.argv = [script, *argv[2:]]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
