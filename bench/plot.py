"""The failover time distributions as a PNG, from what bench/failover.py recorded.

    python bench/plot.py [--json bench/results/failover.json] [--out bench/results/failover.png]

One panel per fault (crash, cut, hung), one row per system and setting: every run's time
from the fault to the VIP on the survivor as a dot (red: the VIP was on both nodes in that
run), the median as a bar, and "no takeover" written where the survivor never took the VIP
in the observation window (hbd's answer to a partition or a hang it cannot prove is over).
Needs matplotlib (`pip install matplotlib`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
TITLES = {
    "crash": "power loss of the active node",
    "cut": "every link between the nodes cut",
    "hung": "active node's daemon hung (SIGSTOP)",
}


def plot(data: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [s["label"] for s in data["systems"]]
    runs = data["runs"]
    scenarios = [sc for sc in TITLES if any(r["scenario"] == sc for r in runs)]
    fig, axes = plt.subplots(
        1, len(scenarios), figsize=(5.2 * len(scenarios), 0.42 * len(labels) + 1.6), sharey=True
    )
    if len(scenarios) == 1:
        axes = [axes]
    for ax, scenario in zip(axes, scenarios, strict=True):
        top = max(
            [r["failover_s"] for r in runs if r["failover_s"] is not None] + [1.0],
        )
        for y, label in enumerate(labels):
            mine = [r for r in runs if r["system"] == label and r["scenario"] == scenario]
            times = [r["failover_s"] for r in mine if r["failover_s"] is not None]
            for r in mine:
                if r["failover_s"] is None:
                    continue
                color = "tab:red" if r["split_ms"] > 0 else "tab:blue"
                ax.plot(r["failover_s"], y, "o", color=color, alpha=0.7, markersize=5)
            if times:
                ax.plot([statistics.median(times)] * 2, [y - 0.3, y + 0.3], color="black", lw=2)
            if mine and len(times) < len(mine):
                never = len(mine) - len(times)
                ax.text(0.02 * top, y, f"no takeover ({never}/{len(mine)})", va="center",
                        fontsize=8, color="tab:green")  # fmt: skip
        ax.set_title(TITLES[scenario], fontsize=10)
        ax.set_xlabel("seconds from the fault to the VIP on the survivor")
        ax.set_xlim(0, top * 1.08)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(labels)))
    axes[0].set_yticklabels(labels, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(
        "Failover time per run (bar: median; red: VIP on both nodes in that run)", fontsize=11
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=RESULTS / "failover.json")
    parser.add_argument("--out", type=Path, default=RESULTS / "failover.png")
    args = parser.parse_args(argv)
    try:
        data = json.loads(args.json.read_text())
    except FileNotFoundError:
        print(f"plot: {args.json} not found: run bench/failover.py first", file=sys.stderr)
        return 2
    plot(data, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
