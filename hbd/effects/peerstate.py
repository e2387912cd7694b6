"""The generations heard from each peer, kept across this node's restarts.

`STATE_DIR/generations` holds one line `NODE GENERATION SEQUENCE` per peer: the newest
incarnation heard from it and the highest sequence heard in it. The node asks for it to be
written (`RememberPeerGenerations`) when a peer's generation changes, when a peer dies or
leaves, every minute while sequences advance, and at a clean stop; it is written as the
identity files are, to a new file fsync'ed and renamed over the old one, then the directory
fsync'ed. At the next start the core refuses frames up to that point as replays
(`hbd.core.membership`). A line that cannot be used is left out and named in the warnings
(FILE:LINE: why); a peer left out is then only as protected as Heartbeat's own peers.
"""

from __future__ import annotations

import os

from hbd.config.syntax import digits
from hbd.effects.identity import write_durably

GENERATIONS_FILE = "generations"
_U32 = (1 << 32) - 1


def load_peer_generations(
    state_dir: str, peers: tuple[str, ...]
) -> tuple[tuple[tuple[str, int, int], ...], list[str]]:
    """The (peer, generation, highest sequence) saved by the last run, and warnings."""
    path = os.path.join(state_dir, GENERATIONS_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return (), []
    except (OSError, UnicodeDecodeError) as e:
        return (), [
            f"{path}: cannot be read ({e}); replays of what peers sent before this start "
            "are not told from their frames until they are heard again"
        ]
    out: dict[str, tuple[int, int]] = {}
    warnings: list[str] = []
    for number, line in enumerate(lines, 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        where = f"{path}:{number}"
        if len(words) != 3 or not (digits(words[1]) and digits(words[2])):
            warnings.append(f"{where}: expected 'NODE GENERATION SEQUENCE'; line ignored")
            continue
        name, generation, seq = words[0], int(words[1]), int(words[2])
        if name not in peers:
            warnings.append(f"{where}: {name!r} is no peer in ha.cf; line ignored")
        elif generation > _U32 or seq > _U32:
            warnings.append(f"{where}: a generation and a sequence are 32-bit; line ignored")
        elif name in out:
            warnings.append(f"{where}: {name} given twice; this line ignored")
        else:
            out[name] = (generation, seq)
    return tuple((n, g, s) for n, (g, s) in out.items()), warnings


def save_peer_generations(state_dir: str, generations: tuple[tuple[str, int, int], ...]) -> None:
    """Write the peers' generations durably (a new file renamed over the old one)."""
    text = "# each peer's newest generation and sequence heard; hbd rewrites this file\n"
    text += "".join(f"{n} {g} {s}\n" for n, g, s in sorted(generations))
    write_durably(os.path.join(state_dir, GENERATIONS_FILE), text)
