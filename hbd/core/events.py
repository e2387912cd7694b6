"""Events the core reports: frozen, slotted, past-tense. The daemon logs them and acts on them.

`Event` is the union of them all; `Engine.next_event()` returns one at a time, in the order
they happened. Times are monotonic seconds as given to the core; intervals are milliseconds
where Heartbeat's log lines speak in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from hbd.core.errors import DropReason


@dataclass(frozen=True, slots=True)
class NodeUp:
    """A node became reachable: first contact, or back after being dead.

    `status` is what it says of itself ("up" or "active"); a `NodeActive` follows when
    it is "active".
    """

    node: str
    status: str
    generation: int
    path: str  # the path the first frame came over


@dataclass(frozen=True, slots=True)
class NodeActive:
    """A node's status became active (it has joined the cluster)."""

    node: str


@dataclass(frozen=True, slots=True)
class NodeDead:
    """Every path to `node` was silent for its deadtime (or initdead before first contact).

    `last_heard` is None when it was never heard. `deadtime` is the timeout that expired:
    the peer's advertised deadtime, ours when it advertised none, or initdead.
    """

    node: str
    last_heard: float | None
    deadtime: float


@dataclass(frozen=True, slots=True)
class NodeLeft:
    """A node said it is shutting down cleanly (Heartbeat's t=shutdone, or an hbd frame
    with state leaving): it is declared dead at once, not after deadtime."""

    node: str


@dataclass(frozen=True, slots=True)
class NodeRestarted:
    """A node came back with a higher generation: it restarted (or rebooted)."""

    node: str
    old_generation: int
    new_generation: int


@dataclass(frozen=True, slots=True)
class GenerationWentBack:
    """A node silent for its deadtime came back with a LOWER generation: a new incarnation
    (reinstalled, or its state directory lost), taken as a restart and worth a warning."""

    node: str
    old_generation: int
    new_generation: int


@dataclass(frozen=True, slots=True)
class PathUp:
    """`path` carries `node` again (or for the first time)."""

    node: str
    path: str


@dataclass(frozen=True, slots=True)
class PathDown:
    """`path` stopped carrying `node`: silent for `silent_for` seconds.

    `by_detector` is True when the adaptive detector called it before deadtime.
    """

    node: str
    path: str
    silent_for: float
    by_detector: bool = False


@dataclass(frozen=True, slots=True)
class LateHeartbeat:
    """A heartbeat from `node` came `interval_ms` after the previous one, past warntime."""

    node: str
    path: str
    interval_ms: int


@dataclass(frozen=True, slots=True)
class DeadtimeDiffers:
    """`node` advertises another deadtime than this node's: it is declared dead by its own
    (`theirs`, seconds), as Heartbeat does; reported when first heard and on each change."""

    node: str
    theirs: float
    ours: float


@dataclass(frozen=True, slots=True)
class DuplicateNode:
    """Two sources claim one node name or one uuid: a cloned machine or a misconfiguration.

    `first` is the claimant heard first, `second` the other one, each described as
    "name=... uuid=... generation=... via PATH [from SOURCE]".
    """

    node: str
    first: str
    second: str
    detail: str


@dataclass(frozen=True, slots=True)
class UuidClash:
    """Peer `node` sends frames with THIS node's own uuid: one of the two machines is a
    clone (a copied disk image or state directory). `claimant` describes what was heard
    ("name=... uuid=... generation=... via PATH [from SOURCE]"). Reported once until the
    peer is heard with another uuid (`fixed`), which is reported too."""

    node: str
    claimant: str
    uuid: bytes
    fixed: bool = False


@dataclass(frozen=True, slots=True)
class FrameDropped:
    """A received frame (or run of bytes) was thrown away; `source` is the sender address."""

    path: str
    reason: DropReason
    detail: str = ""
    source: str | None = None


@dataclass(frozen=True, slots=True)
class AdvertReceived:
    """A peer's resource-group advert (hbd.core.advert bytes), authenticated and fresh."""

    node: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class LocalActive:
    """This node finished starting and advertises itself active (Heartbeat's comm_now_up)."""

    node: str


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A cluster message other than a heartbeat or a control message we answer ourselves.

    `fields` are the message's name/value pairs in order (Heartbeat formats); hbd native
    frames carry no such messages.
    """

    node: str
    path: str
    type: str
    fields: tuple[tuple[str, str], ...]


Event = (
    NodeUp
    | NodeActive
    | NodeDead
    | NodeRestarted
    | GenerationWentBack
    | NodeLeft
    | PathUp
    | PathDown
    | LateHeartbeat
    | DeadtimeDiffers
    | DuplicateNode
    | UuidClash
    | FrameDropped
    | LocalActive
    | MessageReceived
    | AdvertReceived
)
