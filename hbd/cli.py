"""The `hbd` daemon command and the `hbctl` control command.

Every user mistake ends as one line `FILE:LINE: what is wrong (and the fix)` on stderr and
exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from hbd.config.load import DEFAULT_CONFIG_DIR, load_config
from hbd.core.errors import HbdError
from hbd.identity import local_node_name

EXIT_OK = 0
EXIT_USAGE = 2


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config-dir",
        default=DEFAULT_CONFIG_DIR,
        help=f"Heartbeat configuration directory (default {DEFAULT_CONFIG_DIR})",
    )
    p.add_argument("--node-name", help="this node's name (default: `uname -n`, lowercased)")


def _check_config(args: argparse.Namespace) -> int:
    from hbd.checkconfig import print_config

    config = load_config(args.config_dir, local_node_name(args.node_name))
    print_config(config, args.json)
    return EXIT_OK


def hbctl_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hbctl", description="See and steer an hbd cluster.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("check-config", help="check a configuration and print what hbd understood")
    _add_config_args(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_check_config)
    return parser


def _run(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        return func(args)
    except HbdError as e:
        print(f"{e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def hbctl_main(argv: Sequence[str] | None = None) -> int:
    args = hbctl_parser().parse_args(argv)
    return _run(args.func, args)
