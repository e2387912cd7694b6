"""The node and path state tables. Imports nothing else from hbd (h11 `_state.py` style).

A peer node moves init -> up -> active -> dead and back; each (node, path) pair is init
(never heard), up or dead. `membership.py` feeds inputs through these tables and turns each
change into an event; nothing else may change a state.
"""

from __future__ import annotations

import enum

# IDENTITY_HASH: the transition tables below are looked up for every frame a node reads
# (a path heard, a node heard). Enum's own __hash__ is a Python function called twice a
# lookup; members are singletons compared by identity, so the identity hash is the same
# contract at C speed.


class NodeState(enum.Enum):
    """A node's status. The values are Heartbeat's status words, as `hbctl status` shows."""

    INIT = "init"  # configured, never heard (the initdead clock runs)
    UP = "up"  # heard; it says it is starting (Heartbeat's "up" or "init")
    ACTIVE = "active"  # heard; it says it has joined the cluster (Heartbeat's "active")
    DEAD = "dead"  # every path silent for its deadtime (initdead before first contact)

    __hash__ = object.__hash__  # see IDENTITY_HASH


class NodeInput(enum.Enum):
    HEARD_UP = "heard-up"  # a frame arrived and the sender says "init" or "up"
    HEARD_ACTIVE = "heard-active"  # a frame arrived and the sender says "active"
    SILENT = "silent"  # deadtime (or initdead) passed with nothing from any path

    __hash__ = object.__hash__  # see IDENTITY_HASH


NODE_TRANSITIONS: dict[tuple[NodeState, NodeInput], NodeState] = {
    # INIT -> UP: first contact with a peer that is still starting
    (NodeState.INIT, NodeInput.HEARD_UP): NodeState.UP,
    # INIT -> ACTIVE: first contact with a peer already in the cluster
    (NodeState.INIT, NodeInput.HEARD_ACTIVE): NodeState.ACTIVE,
    # INIT -> DEAD: initdead passed and we never heard it
    (NodeState.INIT, NodeInput.SILENT): NodeState.DEAD,
    # UP -> UP: another heartbeat while it starts
    (NodeState.UP, NodeInput.HEARD_UP): NodeState.UP,
    # UP -> ACTIVE: it finished starting
    (NodeState.UP, NodeInput.HEARD_ACTIVE): NodeState.ACTIVE,
    # UP -> DEAD: deadtime passed with nothing on any path
    (NodeState.UP, NodeInput.SILENT): NodeState.DEAD,
    # ACTIVE -> ACTIVE: the ordinary heartbeat
    (NodeState.ACTIVE, NodeInput.HEARD_ACTIVE): NodeState.ACTIVE,
    # ACTIVE -> UP: it restarted and is starting again
    (NodeState.ACTIVE, NodeInput.HEARD_UP): NodeState.UP,
    # ACTIVE -> DEAD: deadtime passed with nothing on any path
    (NodeState.ACTIVE, NodeInput.SILENT): NodeState.DEAD,
    # DEAD -> UP: it came back, starting
    (NodeState.DEAD, NodeInput.HEARD_UP): NodeState.UP,
    # DEAD -> ACTIVE: it came back (a partition healed)
    (NodeState.DEAD, NodeInput.HEARD_ACTIVE): NodeState.ACTIVE,
    # DEAD -> DEAD: still silent
    (NodeState.DEAD, NodeInput.SILENT): NodeState.DEAD,
}


def next_node_state(state: NodeState, event: NodeInput) -> NodeState:
    """The state after `event`; every (state, input) pair has an entry."""
    return NODE_TRANSITIONS[(state, event)]


class PathState(enum.Enum):
    """One path to one peer, e.g. beta over `bcast:eth0`."""

    INIT = "init"  # never heard on this path
    UP = "up"  # heard within the path's timeout
    DEAD = "dead"  # silent past deadtime (or past the adaptive detector's shorter timeout)

    __hash__ = object.__hash__  # see IDENTITY_HASH


class PathInput(enum.Enum):
    HEARD = "heard"  # a frame from the peer arrived on this path
    SILENT = "silent"  # the path's timeout passed

    __hash__ = object.__hash__  # see IDENTITY_HASH


PATH_TRANSITIONS: dict[tuple[PathState, PathInput], PathState] = {
    # INIT -> UP: first frame on this path
    (PathState.INIT, PathInput.HEARD): PathState.UP,
    # INIT -> DEAD: initdead passed and the path never carried the peer
    (PathState.INIT, PathInput.SILENT): PathState.DEAD,
    # UP -> UP: the ordinary heartbeat
    (PathState.UP, PathInput.HEARD): PathState.UP,
    # UP -> DEAD: silent past its timeout
    (PathState.UP, PathInput.SILENT): PathState.DEAD,
    # DEAD -> UP: the path carries the peer again
    (PathState.DEAD, PathInput.HEARD): PathState.UP,
    # DEAD -> DEAD: still silent
    (PathState.DEAD, PathInput.SILENT): PathState.DEAD,
}


def next_path_state(state: PathState, event: PathInput) -> PathState:
    """The state after `event`; every (state, input) pair has an entry."""
    return PATH_TRANSITIONS[(state, event)]


class LocalState(enum.Enum):
    """This node's own status as it advertises it (Heartbeat's `st` field)."""

    UP = "up"  # started; waiting to hear every peer (or initdead) and, on wire heartbeat, repnodes
    ACTIVE = "active"  # joined the cluster


LOCAL_TRANSITIONS: dict[LocalState, frozenset[LocalState]] = {
    # UP -> ACTIVE: every peer heard or dead, and (wire heartbeat) a repnodes answer or no peer
    LocalState.UP: frozenset({LocalState.ACTIVE}),
    # ACTIVE stays ACTIVE until the process stops
    LocalState.ACTIVE: frozenset(),
}
