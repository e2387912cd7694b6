"""The `hbd` daemon command and the `hbctl` control command.

Every user mistake ends as one line `FILE:LINE: what is wrong (and the fix)` on stderr and
exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from hbd.config.load import (
    DEFAULT_CONFIG_DIR,
    check_watchdog_device,
    load_config,
    local_node_name,
)
from hbd.core.errors import ConfigError, HbdError
from hbd.shell.paths import DEFAULT_RUN_DIR, DEFAULT_STATE_DIR

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_NO_DAEMON = 3  # `hbctl status` and friends: no hbd answered (2 is "partitioned")
RUN_DIR_ENV = "HBD_RUN_DIR"


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config-dir",
        default=DEFAULT_CONFIG_DIR,
        help=f"Heartbeat configuration directory (default {DEFAULT_CONFIG_DIR})",
    )
    p.add_argument("--node-name", help="this node's name (default: `uname -n`, lowercased)")


def _check_config(args: argparse.Namespace) -> int:
    from hbd.commands.checkconfig import print_config

    config = load_config(args.config_dir, local_node_name(args.node_name))
    check_watchdog_device(config.hacf)
    print_config(config, args.json)
    return EXIT_OK


def _add_run_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--run-dir",
        default=None,
        help=f"the daemon's run directory (${RUN_DIR_ENV}, else {DEFAULT_RUN_DIR})",
    )


def _version(prog: str) -> str:
    from hbd import __version__

    return f"{prog} {__version__}"


def _status(args: argparse.Namespace) -> int:
    from hbd.commands import statusview
    from hbd.shell.control import ControlError, request

    def fetch() -> dict[str, Any] | None:
        try:
            return request(args.run_dir, "status")
        except ControlError as e:
            print(str(e), file=sys.stderr)
            return None

    status = fetch()
    if status is None:
        return EXIT_NO_DAEMON
    if args.command == "nodes":
        print("\n".join(statusview.nodes_lines(status)))
    elif args.command == "links":
        print("\n".join(statusview.links_lines(status)))
    elif args.json:
        print(statusview.dump_json(status))
    elif args.watch:
        from rich.console import Console
        from rich.live import Live

        console = Console()
        with Live(console=console, auto_refresh=False) as live:
            while status is not None:
                with console.capture() as capture:
                    statusview.render_status(status, console)
                live.update(capture.get(), refresh=True)
                time.sleep(args.interval)
                status = fetch()
        return EXIT_NO_DAEMON
    else:
        from rich.console import Console

        statusview.render_status(status, Console())
    return statusview.exit_code(status)


def _cl_status(args: argparse.Namespace) -> int:
    from hbd.commands.clstatus import main

    words = (["-h"] if args.help else []) + list(args.words)
    return main(words, run_dir=args.run_dir, config_dir=args.config_dir)


def _export(args: argparse.Namespace) -> int:
    from hbd.commands.export import ExportError, export_pacemaker

    config = load_config(args.config_dir, local_node_name(args.node_name))
    try:
        text = export_pacemaker(config.groups, config.hacf.auto_failback, args.format)
    except ExportError as e:
        print(f"{args.config_dir}: {e}", file=sys.stderr)
        return EXIT_USAGE
    sys.stdout.write(text)
    return EXIT_OK


def _steer(args: argparse.Namespace) -> int:
    """`hbctl standby MODE` / `hbctl takeover MODE`: ask the daemon; the hand-off itself
    happens as the policy allows (never two holders), `hbctl status` shows its progress."""
    from hbd.shell.control import request

    reply = request(args.run_dir, args.command, mode=args.mode)
    print(reply.get("message", f"{args.command} {args.mode} requested"))
    return EXIT_OK


def _events(args: argparse.Namespace) -> int:
    from hbd.commands.events import main

    if args.after < 0:
        print("--after takes a sequence number >= 0", file=sys.stderr)
        return EXIT_USAGE
    return main(args.run_dir, as_json=args.json, after=args.after, follow=args.follow)


def hbctl_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hbctl", description="See and steer an hbd cluster.")
    parser.add_argument("--version", action="version", version=_version("hbctl"))
    parser.add_argument(
        "--run-dir",
        dest="global_run_dir",
        default=None,
        metavar="RUN_DIR",
        help=f"the daemon's run directory, for every command (${RUN_DIR_ENV}, else "
        f"{DEFAULT_RUN_DIR}); a command's own --run-dir wins",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("check-config", help="check a configuration and print what hbd understood")
    _add_config_args(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_check_config)
    p = sub.add_parser(
        "status",
        help="the cluster as this node sees it: exit 0 redundant, 1 degraded, 2 partitioned, "
        "3 no daemon",
    )
    _add_run_dir(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--watch", action="store_true", help="follow it, refreshing every second")
    p.add_argument("--interval", type=float, default=1.0, help=argparse.SUPPRESS)
    p.set_defaults(func=_status)
    for name, text in (("nodes", "one line per node"), ("links", "one line per path")):
        p = sub.add_parser(name, help=text)
        _add_run_dir(p)
        p.set_defaults(func=_status, json=False, watch=False)
    p = sub.add_parser(
        "cl-status",
        help="Heartbeat's cl_status: same output and exit status, for existing scripts",
        description="Answers Heartbeat's `cl_status SUBCOMMAND [-m] [ARGS]` from hbd's status, "
        "printing what cl_status prints. Subcommands: hbstatus, listnodes, nodestatus NODE, "
        "nodetype NODE, listhblinks NODE, hblinkstatus NODE LINK, rscstatus. "
        "`hbctl cl-status -h` lists them.",
        add_help=False,
    )
    _add_run_dir(p)
    p.add_argument(
        "--config-dir",
        default=DEFAULT_CONFIG_DIR,
        help=f"where ha.cf is, for Heartbeat's node order (default {DEFAULT_CONFIG_DIR})",
    )
    p.add_argument("-h", "--help", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("words", nargs=argparse.REMAINDER, metavar="SUBCOMMAND ...")
    p.set_defaults(func=_cl_status)
    p = sub.add_parser(
        "events",
        help="what happened, in order: peers, paths, ping nodes, redundancy, groups, fencing, "
        "the vote, commands (docs/events.md)",
    )
    _add_run_dir(p)
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new ones")
    p.add_argument("--json", action="store_true", help="one JSON object a line")
    p.add_argument(
        "--after", type=int, default=0, metavar="SEQ", help="only the ones after this number"
    )
    p.set_defaults(func=_events)
    for name, modes, text in (
        ("standby", ("all", "local", "foreign", "off"), "refuse groups until 'standby off'"),
        ("takeover", ("all", "local", "foreign", "failback"), "take groups from the peer, once"),
        ("release", ("all", "local", "foreign", "failback"), "give groups to the peer, once"),
    ):
        p = sub.add_parser(name, help=text)
        _add_run_dir(p)
        p.add_argument("mode", nargs="?", default="all", choices=modes)
        p.set_defaults(func=_steer)
    from hbd.commands import cabletest

    cabletest.add_parser(sub)
    p = sub.add_parser(
        "qnetd-test",
        help="connect to a corosync-qnetd, handshake, report what it said and the round trip",
    )
    p.add_argument("server", metavar="HOST[:PORT]", help="qnetd's address (port 5403 default)")
    p.add_argument("--algorithm", choices=("ffsplit", "lms"), default="ffsplit")
    p.add_argument("--tls", action="store_true", help="ask for TLS (certificates: docs/qnetd.md)")
    p.add_argument(
        "--tls-dir",
        default=None,
        metavar="DIR",
        help="where qnetd-cacert.pem, cluster-cert.pem and cluster-key.pem are "
        "(default /etc/hbd/qnetd, the daemon's)",
    )
    p.add_argument("--count", type=int, default=3, help="echo requests, a second apart (3)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds for the handshake (5)")
    p.add_argument("--json", action="store_true", help="the report as JSON")
    p.set_defaults(func=_qnetd_test)
    p = sub.add_parser("export", help="the configuration for another cluster manager")
    what = p.add_subparsers(dest="target", required=True, metavar="TARGET")
    p = what.add_parser(
        "pacemaker", help="haresources as a Pacemaker configuration (crm shell or pcs)"
    )
    _add_config_args(p)
    p.add_argument(
        "--format", choices=("crm", "pcs"), default="crm", help="crm shell (default) or pcs"
    )
    p.set_defaults(func=_export)
    return parser


def _qnetd_test(args: argparse.Namespace) -> int:
    import json

    from hbd.config.hacf import parse_hacf
    from hbd.shell import qnetdprobe

    # the same HOST[:PORT] rules as ha.cf's `qnetd` line, with its errors
    try:
        hacf = parse_hacf(f"node a\nbcast lo\nauto_failback on\nqnetd {args.server}\n")
    except ConfigError as e:
        print(f"hbctl qnetd-test: {e.message}", file=sys.stderr)
        return EXIT_USAGE
    assert hacf.qnetd is not None
    if args.count < 1:
        print("--count must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    report = qnetdprobe.probe(
        hacf.qnetd,
        hacf.qnetd_port,
        algorithm=args.algorithm,
        tls=args.tls,
        count=args.count,
        timeout=args.timeout,
        tls_dir=args.tls_dir,
    )
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(qnetdprobe.render(report))
    return report.exit_code()


def _run(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        return func(args)
    except HbdError as e:
        print(f"{e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `hbctl status --json | head`: the reader left, not an error
        sys.stderr.close()
        return EXIT_OK


def hbctl_main(argv: Sequence[str] | None = None) -> int:
    args = hbctl_parser().parse_args(argv)
    args.run_dir = (
        getattr(args, "run_dir", None)
        or args.global_run_dir
        or os.environ.get(RUN_DIR_ENV)
        or DEFAULT_RUN_DIR
    )
    return _run(args.func, args)


def _heartbeat_shim(prog: str, cmd: str, argv: Sequence[str] | None) -> int:
    """`hb_standby` / `hb_takeover [all|foreign|local|failback]`, as Heartbeat's scripts
    take them: the mode (default all) and nothing else; the run directory from
    $HBD_RUN_DIR. hb_standby gives groups to the peer once (hbctl release), hb_takeover
    takes them once (hbctl takeover)."""
    from hbd.shell.control import request

    words = list(sys.argv[1:] if argv is None else argv)
    modes = ("all", "foreign", "local", "failback")
    if len(words) > 1 or (words and words[0] not in modes):
        print(f"usage: {prog} [{'|'.join(modes)}]", file=sys.stderr)
        return EXIT_USAGE
    mode = words[0] if words else "all"
    run_dir = os.environ.get(RUN_DIR_ENV) or DEFAULT_RUN_DIR
    try:
        reply = request(run_dir, cmd, mode=mode)
    except HbdError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    print(reply.get("message", f"{cmd} {mode} requested"))
    return EXIT_OK


def hb_standby_main(argv: Sequence[str] | None = None) -> int:
    return _heartbeat_shim("hb_standby", "release", argv)


def hb_takeover_main(argv: Sequence[str] | None = None) -> int:
    return _heartbeat_shim("hb_takeover", "takeover", argv)


def hbd_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hbd",
        description="hbd: the heartbeat daemon. Runs in the foreground (as systemd wants). "
        "`hbd demo` starts a two-node demo cluster on this machine.",
    )
    parser.add_argument("--version", action="version", version=_version("hbd"))
    _add_config_args(parser)
    parser.add_argument(
        "--state-dir",
        default=DEFAULT_STATE_DIR,
        help=f"where the node uuid and generation are kept (default {DEFAULT_STATE_DIR})",
    )
    _add_run_dir(parser)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log debug messages")
    return parser


def _run_daemon(args: argparse.Namespace) -> int:
    from hbd.shell.daemon import AlreadyRunning, Daemon, DaemonOptions

    options = DaemonOptions(
        config_dir=args.config_dir,
        state_dir=args.state_dir,
        run_dir=args.run_dir,
        node_name=args.node_name,
        verbose=args.verbose,
    )
    try:
        return Daemon(options).run()
    except AlreadyRunning as e:
        print(str(e), file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:  # a start-up step the system refused: one line, no traceback
        where = f" {e.filename}" if e.filename else ""
        print(f"hbd cannot start:{where} {e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE


def hbd_main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["demo"]:
        from hbd.commands.demo import demo_main

        return demo_main(argv[1:])
    args = hbd_parser().parse_args(argv)
    args.run_dir = args.run_dir or DEFAULT_RUN_DIR
    return _run(_run_daemon, args)
