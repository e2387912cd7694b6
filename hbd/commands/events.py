"""`hbctl events [--follow] [--json] [--after SEQ]`: the daemon's ordered stream of notices.

Each line is one notice (`hbd.core.notices`), oldest first, never reordered: as text,
`TIME #SEQ KIND SUBJECT STATE (was OLD): REASON`, or with `--json` one JSON object a line
(seq, time, node, kind, subject, state, old, reason). `--follow` keeps asking for what is
newer, twice a second; it says so on a line of its own when it missed notices (older than
the daemon keeps), when the daemon restarted (its stream begins again), and while no daemon
answers (it keeps trying). docs/events.md.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TextIO

from hbd.shell.control import ControlError, request

POLL = 0.5  # seconds between asks while following
RETRY = 1.0  # seconds between asks while no daemon answers

Ask = Callable[[int], dict[str, Any]]


def text_line(event: dict[str, Any]) -> str:
    when = datetime.fromtimestamp(event["time"]).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    was = f" (was {event['old']})" if event.get("old") else ""
    return (
        f"{when} #{event['seq']} {event['kind']} {event['subject']} {event['state']}{was}: "
        f"{event['reason']}"
    )


def _note(out: TextIO, as_json: bool, text: str) -> None:
    """A line about the stream itself (not a notice): a comment in text, an object in JSON."""
    print(json.dumps({"note": text}) if as_json else f"-- {text} --", file=out, flush=True)


def show(
    ask: Ask,
    out: TextIO,
    *,
    as_json: bool,
    after: int = 0,
    follow: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    stop: Callable[[], bool] = lambda: False,
) -> int:
    """Print the notices after `after`; with `follow`, go on until `stop()` (or forever).
    Exit status: 0, or 3 when no daemon answered (without --follow)."""
    stream: int | None = None
    away = False
    while True:
        try:
            page = ask(after)
        except ControlError as e:
            if not follow:
                print(str(e), file=sys.stderr)
                return 3
            if not away:
                _note(out, as_json, f"no daemon answers ({e}); still trying")
                away = True
            if stop():
                return 0
            sleep(RETRY)
            continue
        if away:
            _note(out, as_json, "the daemon answers again")
            away = False
        if stream is not None and page.get("stream") != stream:
            _note(
                out,
                as_json,
                f"hbd restarted (generation {stream} -> {page.get('stream')}): its stream "
                "begins again; what happened while it was down is in the log",
            )
            after = 0
            stream = page.get("stream")
            continue
        stream = page.get("stream")
        if page.get("missed"):
            _note(out, as_json, f"{page['missed']} older notices are no longer kept")
        for event in page["events"]:
            print(json.dumps(event) if as_json else text_line(event), file=out, flush=True)
        after = page["next"]
        if page["events"] and page["next"] < page.get("last", page["next"]):
            continue  # more than one page waiting
        if not follow or stop():
            return 0
        sleep(POLL)


def main(run_dir: str, *, as_json: bool, after: int, follow: bool) -> int:
    def ask(seq: int) -> dict[str, Any]:
        return request(run_dir, "events", after=seq)

    try:
        return show(ask, sys.stdout, as_json=as_json, after=after, follow=follow)
    except KeyboardInterrupt:
        return 0
