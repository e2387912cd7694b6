"""This node's identity: its uuid, and the generation counter kept across starts.

The uuid lives in the state directory (`--state-dir`, default /var/lib/hbd) unless ha.cf
says `uuidfrom nodename`. The generation is incremented, written and fsync'ed at every
start, so peers see a restart as a new generation and a replayed old frame as stale.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import time
import uuid
from dataclasses import dataclass

from hbd.config.safefiles import create_temp
from hbd.config.syntax import digits
from hbd.core.errors import HbdError

UUID_FILE = "uuid"
GENERATION_FILE = "generation"


class StateError(HbdError):
    """The state directory cannot be used; the message names the file and the fix."""


@dataclass(frozen=True, slots=True)
class Identity:
    node_name: str
    uuid: bytes  # 16 bytes
    generation: int


def write_durably(path: str, text: str) -> None:
    """Replace `path` whole: a new temp file (a name nobody could plant, O_EXCL), written,
    fsync'ed, renamed over `path` (a rename replaces a symbolic link, never follows it),
    and the directory fsync'ed."""
    directory = os.path.dirname(path) or "."
    fd, tmp = create_temp(directory, f"{os.path.basename(path)}.tmp.", 0o644)
    try:
        try:
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _node_uuid(state_dir: str, node_name: str, uuidfrom: str) -> bytes:
    if uuidfrom == "nodename":
        # As Heartbeat: the node name stands in for the uuid (first 16 bytes, zero-padded).
        return node_name.encode()[:16].ljust(16, b"\0")
    path = os.path.join(state_dir, UUID_FILE)
    try:
        with open(path) as f:
            text = f.read().strip()
    except FileNotFoundError:
        new = uuid.uuid4()
        write_durably(path, f"{new}\n")
        return new.bytes
    try:
        return uuid.UUID(text).bytes
    except ValueError:
        raise StateError(
            f"{path}: '{text[:40]}' is not a uuid; remove the file to make a new one "
            "(peers will then see this node as a new machine)"
        ) from None


def _next_generation(state_dir: str, hbgenmethod: str) -> int:
    path = os.path.join(state_dir, GENERATION_FILE)
    previous = 0
    try:
        with open(path) as f:
            text = f.read().strip()
    except FileNotFoundError:
        text = ""
    if text:
        if not digits(text):
            raise StateError(
                f"{path}: '{text[:40]}' is not a generation number; write a number larger than "
                "any this node used before (peers drop frames of older generations)"
            )
        previous = int(text)
    generation = previous + 1
    if hbgenmethod == "time":
        generation = max(generation, int(time.time()))
    write_durably(path, f"{generation}\n")
    return generation


def load_identity(state_dir: str, node_name: str, uuidfrom: str, hbgenmethod: str) -> Identity:
    """Read or create the uuid and bump the generation. Raises StateError with the fix."""
    try:
        os.makedirs(state_dir, mode=0o755, exist_ok=True)
        node_uuid = _node_uuid(state_dir, node_name, uuidfrom)
        generation = _next_generation(state_dir, hbgenmethod)
    except OSError as e:
        raise StateError(
            f"{e.filename or state_dir}: {e.strerror}; hbd keeps its uuid and generation in "
            f"the state directory (--state-dir)"
        ) from None
    return Identity(node_name, node_uuid, generation)


PEERS_FILE = "peers"


def load_peer_addresses(
    state_dir: str, peers: tuple[str, ...]
) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """The peers' addresses remembered from earlier runs (`STATE_DIR/peers`, one line
    `NODE ADDRESS...` each), so a node that restarts during a partition can still probe
    its peer. It is a cache: a line that cannot be used is left out and named in the
    returned warnings (FILE:LINE: why), never an error."""
    path = os.path.join(state_dir, PEERS_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return {}, []
    except (OSError, UnicodeDecodeError) as e:
        return {}, [f"{path}: cannot be read ({e}); the peers' addresses are learned anew"]
    out: dict[str, tuple[str, ...]] = {}
    warnings: list[str] = []
    for number, line in enumerate(lines, 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        name, addresses = words[0], words[1:]
        if name not in peers:
            warnings.append(f"{path}:{number}: {name!r} is no peer in ha.cf; line ignored")
            continue
        good = []
        for address in addresses:
            plain, scoped, _scope = address.partition("%")
            try:
                ip = ipaddress.ip_address(plain)
            except ValueError:
                warnings.append(f"{path}:{number}: {address!r} is not an IP address; ignored")
                continue
            if ip.is_link_local and ip.version == 6 and not scoped:
                # an earlier hbd kept it without the interface it was heard on: it is
                # learned again, with it, from the peer's next frame
                warnings.append(
                    f"{path}:{number}: {address!r} is link-local without its interface "
                    "(fe80::1%eth0); ignored"
                )
                continue
            good.append(address)
        out[name] = tuple(good)
    return out, warnings


def save_peer_addresses(state_dir: str, addresses: dict[str, tuple[str, ...]]) -> None:
    """Write the peers' addresses durably (a new file renamed over the old one)."""
    text = "# peers' addresses, learned from their frames; hbd rewrites this file\n"
    text += "".join(f"{n} {' '.join(a)}\n" for n, a in sorted(addresses.items()) if a)
    write_durably(os.path.join(state_dir, PEERS_FILE), text)
