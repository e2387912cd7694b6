"""`hbctl cl-status`: Heartbeat 3.0.6's `cl_status`, answered from hbd's status.

Scripts written for Heartbeat call `cl_status SUBCOMMAND [-m] [ARGS]` and look at what it
prints and at its exit status. This module gives the same answers for the same situations,
so those scripts keep working when hbd replaces Heartbeat. The outputs and exit statuses
were recorded from the real cl_status against two real Heartbeat 3.0.6 daemons
(tests/tools/capture_clstatus.py, recordings in tests/vectors/cl_status/) and are checked
against hbd in tests/test_clstatus.py.

What Heartbeat does, and how hbd's status maps onto it:

* Exit statuses: 0 ok, 1 "normal failure" (heartbeat stopped, node or link down, cannot
  sign on), 11 parameter error, 12 timeout (cl_status gives up after 5 s), 13 other error.
* Not running: `hbstatus` prints "Heartbeat is stopped on this machine." (1); every other
  subcommand logs "Cannot signon with heartbeat" and "REASON: ..." on stderr (1), before
  even looking at its arguments. An unknown subcommand is 11 whether or not it runs.
* Node names: Heartbeat's `node` and `ping`/`ping_group` entries in REVERSE order of
  their ha.cf lines (it walks a list built by prepending). hbd takes that order from
  ha.cf in the configuration directory; without it, from the status (peers, then ping
  nodes, both reversed).
* Node status: a peer's hbd status word (init/up/active/dead) is Heartbeat's; this node is
  "up" until it joins, then "active"; a ping node is "ping" while it answers, else "dead"
  ("init" before its first answer). 0 for active/up/ping, 1 otherwise.
* Links: Heartbeat names a link by its interface (bcast/mcast/ucast) or tty (serial)
  and lists this node's media, newest ha.cf line first, for any normal node; a ping
  node's only link is its address. hbd's path ids (`bcast:eth0`, `ucast:eth1:10.0.0.2`,
  `serial:/dev/ttyS0`) map to those names. A link to a peer is "up" if a path of that
  name to it is up, else "dead"; to this node itself, Heartbeat reports a broadcast link
  up (it hears its own packets) and the others dead, and so does hbd.
* Resources (`rscstatus`): Heartbeat reports which share of the resources this node is
  responsible for, even with an empty haresources: "transition" while a peer has never
  been heard since start (its start-up hand-over never completed), "local" with every
  peer alive, "all" after taking a dead peer's share. With groups in the status (each
  {name, preferred, holder, state}), "none"/"local"/"foreign"/"all" say whether this node
  holds its own groups and others' groups.

Options are parsed as cl_status's getopt does (GNU, options anywhere after the
subcommand; "-m" for sentences meant for humans, "-v" verbose where Heartbeat has it).
Errors go to stderr in Heartbeat's forms: cl_log lines ("<date> <host> cl_status: [<pid>]:
ERROR: ...", the prefix passed in by the caller) or its bare fprintf messages.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from hbd.core.errors import HbdError

OK: Final = 0
NORMAL_FAIL: Final = 1
PARAMETER_ERROR: Final = 11
TIMEOUT: Final = 12
UNKNOWN_ERROR: Final = 13

SIGNON_REASON: Final = "hb_api_signon: Can't initiate connection to heartbeat"
RUNNING: Final = "Heartbeat is running on this machine."
STOPPED: Final = "Heartbeat is stopped on this machine."
REFUSED: Final = "Heartbeat is apparently running on this machine, but refuses my connection"

USAGE: Final = """\
Usage: hbctl cl-status <sub-command> [<options>] [<parameters>] [--run-dir DIR]

Heartbeat's cl_status, answered by hbd (same output and exit status).
Sub-commands:
hblinkstatus <node-name> <link-name>
\tShow the status of a heartbeat link
hbstatus
\tIndicate if heartbeat is running on the local system.
\tOptions:
\t\t-v\tverbose: also add "listnodes -v" output
listnodes [<option>]
\tList the nodes in the cluster.
\tOptions:
\t\t-p\tlist only 'ping' type nodes
\t\t-n\tlist only 'normal' type nodes
\t\t-v\tverbose: also list type and status,
\t\t\tthen add "listhblinks -v" output
listhblinks <node-name>
\tList the network interfaces used as heartbeat links.
\tOptions:
\t\t-v\tverbose: list link status as well
nodestatus <node-name>
\tList the node status.
nodetype <node-name>
\tList the type of a node (normal or ping).
rscstatus
\tShow the status of cluster resources.
All sub-commands take -m for sentences instead of bare words.
"""


class Reach(enum.Enum):
    """How asking the daemon for its status went."""

    ANSWERED = "answered"
    STOPPED = "stopped"  # no control socket, or nobody listening on it
    REFUSED = "refused"  # something is there but would not talk to us (e.g. permissions)
    TIMED_OUT = "timed-out"  # cl_status's 5-second alarm


@dataclass(frozen=True, slots=True)
class Reply:
    """What `cl_status` would have printed, and its exit status."""

    stdout: str
    stderr: str
    rc: int


class _Out:
    def __init__(self, log_prefix: str) -> None:
        self.out: list[str] = []
        self.err: list[str] = []
        self.prefix = log_prefix

    def say(self, text: str) -> None:
        self.out.append(text)

    def fprintf(self, text: str) -> None:
        self.err.append(text)

    def log(self, message: str) -> None:
        """A cl_log(LOG_ERR, ...) line."""
        self.err.append(f"{self.prefix}ERROR: {message}\n")

    def reply(self, rc: int) -> Reply:
        return Reply("".join(self.out), "".join(self.err), rc)


# -- the cluster as Heartbeat names it ------------------------------------------------


def declaration_order(hacf_text: str) -> list[str]:
    """Names of `node`, `ping` and `ping_group` entries in the order of their ha.cf lines."""
    names: list[str] = []
    for raw in hacf_text.splitlines():
        words = raw.split("#", 1)[0].split()
        if len(words) < 2:
            continue
        key = words[0].lower()
        if key in ("node", "ping", "ping6"):
            names += words[1:]
        elif key == "ping_group":
            names.append(words[1])
    return names


def link_name(path_id: str) -> str:
    """Heartbeat's name for a medium: `bcast:eth0` -> eth0, `serial:/dev/ttyS0` -> /dev/ttyS0."""
    kind, _, rest = path_id.partition(":")
    if kind == "serial":
        return rest
    return rest.split(":", 1)[0]


_PING_PREFIXES: Final = ("ping:", "ping_group:")


@dataclass(frozen=True, slots=True)
class _Node:
    name: str
    kind: str  # "normal" or "ping"
    status: str


class _View:
    """hbd's status, read the way Heartbeat's API presents the cluster."""

    def __init__(self, status: Mapping[str, Any], declared: Sequence[str]) -> None:
        self.status = status
        self.me = str(status.get("node", ""))
        peers: Mapping[str, Any] = status.get("nodes") or {}
        pings: Mapping[str, Any] = status.get("ping_nodes") or {}
        self.peers = peers
        self.pings = pings
        nodes = {self.me: _Node(self.me, "normal", _local_status(status))}
        for name, view in peers.items():
            nodes[name] = _Node(name, "normal", str(view.get("status", "dead")))
        for witness, view in pings.items():
            name = witness.split(":", 1)[1] if witness.startswith(_PING_PREFIXES) else witness
            nodes[name] = _Node(name, "ping", _ping_status(str(view.get("status", ""))))
        self.nodes = nodes
        ping_names = [n.name for n in nodes.values() if n.kind == "ping"]
        self.order = _heartbeat_order(declared, list(nodes), list(peers), ping_names, self.me)
        links: Mapping[str, Any] = status.get("links") or {}
        self.media = [pid for pid in links if not pid.startswith(_PING_PREFIXES)]

    def find(self, name: str) -> _Node | None:
        node = self.nodes.get(name)
        if node is None:
            node = next((n for n in self.nodes.values() if n.name.lower() == name.lower()), None)
        return node

    def link_names(self, node: _Node) -> list[str]:
        if node.kind == "ping":
            return [node.name]
        return [link_name(pid) for pid in reversed(self.media)]

    def link_status(self, node: _Node, link: str) -> str | None:
        """'up' or 'dead', or None when `node` has no link of that name."""
        if node.kind == "ping":
            return None if link != node.name else ("up" if node.status == "ping" else "dead")
        if node.name == self.me:
            kinds = [pid.split(":", 1)[0] for pid in self.media if link_name(pid) == link]
            if not kinds:
                return None
            return "up" if "bcast" in kinds else "dead"
        paths: Mapping[str, Any] = self.peers[node.name].get("paths") or {}
        states = [p.get("status") for pid, p in paths.items() if link_name(pid) == link]
        if not states and link not in (link_name(pid) for pid in self.media):
            return None
        return "up" if "up" in states else "dead"

    def resources(self) -> str:
        if _local_status(self.status) != "active":
            return "transition"
        normal_peers = [v for v in self.peers.values() if isinstance(v, Mapping)]
        never_heard = [
            v for v in normal_peers if v.get("status") == "dead" and v.get("last_heard_ms") is None
        ]
        if never_heard:
            return "transition"
        groups = _groups(self.status.get("groups"))
        if groups:
            mine = any(g.get("holder") == self.me and g.get("preferred") == self.me for g in groups)
            theirs = any(
                g.get("holder") == self.me and g.get("preferred") != self.me for g in groups
            )
            return _HELD[(mine, theirs)]
        return "all" if any(v.get("status") == "dead" for v in normal_peers) else "local"


_HELD: Final = {
    (False, False): "none",
    (True, False): "local",
    (False, True): "foreign",
    (True, True): "all",
}


def _groups(raw: Any) -> list[Mapping[str, Any]]:
    if isinstance(raw, Mapping):
        raw = [{"name": k, **v} if isinstance(v, Mapping) else {} for k, v in raw.items()]
    if not isinstance(raw, list):
        return []
    return [g for g in raw if isinstance(g, Mapping)]


def _local_status(status: Mapping[str, Any]) -> str:
    return "active" if status.get("state") == "active" else "up"


def _ping_status(word: str) -> str:
    return {"up": "ping", "dead": "dead"}.get(word, "init")


def _heartbeat_order(
    declared: Sequence[str], known: list[str], peers: list[str], pings: list[str], me: str
) -> list[str]:
    """Heartbeat's node walk: newest ha.cf entry first."""
    by_lower = {name.lower(): name for name in known}
    seen: list[str] = []
    for name in declared:
        real = by_lower.get(name.lower())
        if real is not None and real not in seen:
            seen.append(real)
    if len(seen) == len(known):
        return list(reversed(seen))
    fallback = [me, *peers, *pings]  # ha.cf unreadable: its usual shape, nodes then pings
    return list(reversed([n for n in fallback if n not in seen] + seen))


# -- getopt ---------------------------------------------------------------------------


def _getopt(prog: str, args: Sequence[str], optstr: str, out: _Out) -> tuple[list[str], list[str]]:
    """GNU getopt with permutation: (option letters, '?' for bad ones; operands)."""
    opts: list[str] = []
    operands: list[str] = []
    it = iter(args)
    for arg in it:
        if arg == "--":
            operands += list(it)
            break
        if not arg.startswith("-") or arg == "-":
            operands.append(arg)
            continue
        if arg.startswith("--"):
            out.fprintf(f"{prog}: unrecognized option '{arg}'\n")
            opts.append("?")
            continue
        for letter in arg[1:]:
            if letter in optstr:
                opts.append(letter)
            else:
                out.fprintf(f"{prog}: invalid option -- '{letter}'\n")
                opts.append("?")
    return opts, operands


# -- the subcommands ------------------------------------------------------------------


@dataclass
class _Call:
    view: _View
    out: _Out
    opts: list[str]
    operands: list[str]
    human: bool
    version: str


def _hbstatus(c: _Call) -> int:
    if "v" not in c.opts:
        c.out.say(RUNNING + "\n")
        return OK
    if c.human:
        c.out.say(f"Heartbeat version {c.version}\n" + 'Resources controlled by "haresources"\n')
    else:
        c.out.say(f"version:\t{c.version}\n" + 'managed by:\t"haresources"\n')
    _walk(c, normal_only=False, ping_only=False, verbose=True)
    return OK


def _listnodes(c: _Call) -> int:
    if "?" in c.opts:
        c.out.log("Error: getopt returnedcharacter code ?.")
        return PARAMETER_ERROR
    _walk(c, normal_only="n" in c.opts, ping_only="p" in c.opts, verbose="v" in c.opts)
    return OK


def _walk(c: _Call, *, normal_only: bool, ping_only: bool, verbose: bool) -> None:
    if normal_only and ping_only:
        normal_only = ping_only = False
    if c.human:
        c.out.say("The nodes are as follow:\n")
    for name in c.view.order:
        node = c.view.nodes[name]
        if (normal_only and node.kind != "normal") or (ping_only and node.kind != "ping"):
            continue
        if verbose:
            c.out.say(f"\n{node.name}\t{node.status}\t(nodetype: {node.kind})\n")
            _links(c, node, verbose=True)
        else:
            c.out.say(f"{node.name}\n")


def _simple_opts_ok(c: _Call) -> bool:
    if "?" in c.opts:
        c.out.log("Error: getopt returnedcharacter ?.")
        return False
    return True


def _nodestatus(c: _Call) -> int:
    if not _simple_opts_ok(c):
        return PARAMETER_ERROR
    if not c.operands:
        c.out.fprintf("Not enough parameters.\n")
        return PARAMETER_ERROR
    name = c.operands[0]
    node = c.view.find(name)
    if node is None:
        c.out.fprintf("Error. May be due to incorrect node name\n")
        return PARAMETER_ERROR
    c.out.say(f"The cluster node {name} is {node.status}\n" if c.human else f"{node.status}\n")
    return OK if node.status in ("active", "up", "ping") else NORMAL_FAIL


def _nodetype(c: _Call) -> int:
    if not _simple_opts_ok(c):
        return PARAMETER_ERROR
    if not c.operands:
        c.out.fprintf("No enough parameter.\n")
        return PARAMETER_ERROR
    name = c.operands[0]
    node = c.view.find(name)
    if node is None:
        c.out.fprintf("Error. May be due to incorrect node name\n")
        return PARAMETER_ERROR
    c.out.say(f"The node {name}'s type: {node.kind}\n" if c.human else f"{node.kind}\n")
    return OK


def _listhblinks(c: _Call) -> int:
    if "?" in c.opts:
        c.out.log("Error: getopt returnedcharacter code ?.")
        return PARAMETER_ERROR
    if not c.operands:
        c.out.fprintf("No enough parameter.\n")
        return PARAMETER_ERROR
    node = c.view.find(c.operands[0])
    if node is None:
        c.out.log("Cannot start heartbeat link interface walk.")
        c.out.log("REASON: EINVAL")
        return UNKNOWN_ERROR
    _links(c, node, verbose="v" in c.opts)
    return OK


def _links(c: _Call, node: _Node, *, verbose: bool) -> None:
    if c.human:
        c.out.say("\tthis node has the following heartbeat links:\n")
    for link in c.view.link_names(node):
        if verbose:
            c.out.say(f"\t{link}\t{c.view.link_status(node, link)}\n")
        else:
            c.out.say(f"\t{link}\n")


def _hblinkstatus(c: _Call) -> int:
    if not _simple_opts_ok(c):
        return PARAMETER_ERROR
    if len(c.operands) < 2:
        c.out.fprintf("No enough parameter.\n")
        return PARAMETER_ERROR
    name, link = c.operands[0], c.operands[1]
    node = c.view.find(name)
    state = c.view.link_status(node, link) if node is not None else None
    if state is None:
        c.out.log("Cannot get heartbeat link status")
        c.out.log("REASON: ")
        return UNKNOWN_ERROR
    c.out.say(f"The node {name}'s heartbeat link {link} is {state}\n" if c.human else f"{state}\n")
    return OK if state == "up" else NORMAL_FAIL


def _rscstatus(c: _Call) -> int:
    if not _simple_opts_ok(c):
        return PARAMETER_ERROR
    held = c.view.resources()
    c.out.say(f"This node is holding {held} resources.\n" if c.human else f"{held}\n")
    return OK


# name -> (getopt option letters, handler)
_COMMANDS: Final = {
    "hbstatus": ("mv", _hbstatus),
    "listnodes": ("mpnv", _listnodes),
    "nodestatus": ("m", _nodestatus),
    "nodetype": ("m", _nodetype),
    "listhblinks": ("mv", _listhblinks),
    "hblinkstatus": ("m", _hblinkstatus),
    "rscstatus": ("m", _rscstatus),
}
SUBCOMMANDS: Final = tuple(_COMMANDS)


def cl_status(
    argv: Sequence[str],
    status: Mapping[str, Any] | None,
    *,
    reach: Reach = Reach.ANSWERED,
    reason: str = SIGNON_REASON,
    declared: Iterable[str] = (),
    log_prefix: str = "",
    version: str = "",
) -> Reply:
    """Answer `cl_status ARGV...` (ARGV without the program name) from hbd's `status`.

    `status` is the daemon's status dict, or None when it could not be had (`reach` says
    why, `reason` is the REASON line). `declared` is ha.cf's node/ping declaration order
    (:func:`declaration_order`), `log_prefix` what precedes "ERROR:" on cl_log lines.
    """
    out = _Out(log_prefix)
    if not argv or (len(argv) == 1 and argv[0] == "-h"):
        out.say(USAGE)
        return out.reply(OK)
    sub = argv[0]
    entry = _COMMANDS.get(sub)
    if entry is None:
        out.log(f"{sub}: invalid sub-command.")
        return out.reply(PARAMETER_ERROR)
    if reach is Reach.TIMED_OUT:
        return out.reply(TIMEOUT)
    optstr, handler = entry
    if status is None or reach is not Reach.ANSWERED:
        if sub != "hbstatus":
            out.log("Cannot signon with heartbeat")
            out.log(f"REASON: {reason}")
            return out.reply(NORMAL_FAIL)
        opts, _ = _getopt(sub, argv[1:], optstr, out)
        stopped = reach is not Reach.REFUSED
        out.say((STOPPED if stopped else REFUSED) + "\n")
        if "v" in opts and reason:
            out.say(f"({reason})\n")
        return out.reply(NORMAL_FAIL if stopped else OK)
    opts, operands = _getopt(sub, argv[1:], optstr, out)
    call = _Call(_View(status, list(declared)), out, opts, operands, "m" in opts, version)
    return out.reply(handler(call))


class ClStatusUsageError(HbdError):
    """hbctl's own options given to `cl-status` wrongly."""


_RUN_DIR_OPT = re.compile(r"--(run-dir|config-dir)(?:=(.*))?$")


def split_hbctl_options(words: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Take hbctl's own `--run-dir DIR` / `--config-dir DIR` out of the cl_status words."""
    rest: list[str] = []
    found: dict[str, str] = {}
    it = iter(words)
    for word in it:
        m = _RUN_DIR_OPT.match(word)
        if m is None:
            rest.append(word)
            continue
        value = m.group(2) if m.group(2) is not None else next(it, None)
        if value is None:
            raise ClStatusUsageError(f"hbctl cl-status: {word} needs a directory")
        found[m.group(1).replace("-", "_")] = value
    return rest, found


# -- the command (I/O) ----------------------------------------------------------------


def fetch(run_dir: str, timeout: float = 5.0) -> tuple[dict[str, Any] | None, Reach, str]:
    """The daemon's status, or None with why not (cl_status gives up after 5 s)."""
    from hbd.shell.control import ControlError, request

    try:
        return request(run_dir, "status", timeout=timeout), Reach.ANSWERED, ""
    except ControlError as e:
        text = str(e)
        if "no hbd is running" in text or "no hbd answers" in text:
            return None, Reach.STOPPED, SIGNON_REASON
        if "did not answer" in text:
            return None, Reach.TIMED_OUT, text
        return None, Reach.REFUSED, text


def _log_prefix() -> str:
    import os
    import socket
    import time

    return f"{time.strftime('%b %d %H:%M:%S')} {socket.gethostname()} cl_status: [{os.getpid()}]: "


def main(words: Sequence[str], *, run_dir: str, config_dir: str) -> int:
    """`hbctl cl-status WORDS...`: print what cl_status prints; its exit status."""
    import sys
    from pathlib import Path

    from hbd import __version__

    words, dirs = split_hbctl_options(words)
    run_dir = dirs.get("run_dir", run_dir)
    config_dir = dirs.get("config_dir", config_dir)
    needs_daemon = bool(words) and words[0] in _COMMANDS
    status, reach, reason = fetch(run_dir) if needs_daemon else (None, Reach.STOPPED, "")
    try:
        declared = declaration_order(Path(config_dir, "ha.cf").read_text(errors="replace"))
    except OSError:
        declared = []
    reply = cl_status(
        words,
        status,
        reach=reach,
        reason=reason,
        declared=declared,
        log_prefix=_log_prefix(),
        version=f"3.0.6 (hbd {__version__})",
    )
    sys.stdout.write(reply.stdout)
    sys.stdout.flush()
    sys.stderr.write(reply.stderr)
    return reply.rc
