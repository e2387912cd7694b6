"""Logging where ha.cf says: logfile (info and up), debugfile (the same, and debug lines), syslog
(logfacility), and stderr or the systemd journal. Debug lines only with `debug N` (or -v);
without it `debugfile` gets what `logfile` gets.

Lines look like Heartbeat's, so a Heartbeat user's greps keep working:
`Nov 24 21:18:17 alpha hbd: [1234]: WARN: node beta: is dead`.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys

from hbd.config.model import Config

_LEVEL_NAMES = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "WARN",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRIT",
}


class HeartbeatFormatter(logging.Formatter):
    """`Mon DD HH:MM:SS node hbd: [pid]: level: message`."""

    def __init__(self, node: str, with_time: bool = True) -> None:
        prefix = "%(asctime)s " if with_time else ""
        super().__init__(
            f"{prefix}{node} hbd: [%(process)d]: %(hblevel)s: %(message)s", "%b %d %H:%M:%S"
        )

    def format(self, record: logging.LogRecord) -> str:
        record.hblevel = _LEVEL_NAMES.get(record.levelno, record.levelname)
        return super().format(record)


def _under_journal() -> bool:
    return bool(os.environ.get("JOURNAL_STREAM")) and os.path.exists("/run/systemd/journal/socket")


def configure_logging(config: Config, verbose: int = 0) -> None:
    """Replace the `hbd` logger's handlers with the ones this configuration asks for."""
    hacf = config.hacf
    logger = logging.getLogger("hbd")
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    # debug lines only with `debug N` (or -v): without it `debugfile` gets what `logfile`
    # gets, as Heartbeat's does, not a line per frame
    debug = verbose > 0 or hacf.debug > 0
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    logger.propagate = False
    fmt = HeartbeatFormatter(config.node_name)
    if _under_journal():
        from hbd.effects.systemd import make_journal_handler

        journal = make_journal_handler()
        if journal is not None:
            journal.setLevel(logging.DEBUG if debug else logging.INFO)
            logger.addHandler(journal)
    else:
        stderr = logging.StreamHandler(sys.stderr)
        stderr.setFormatter(fmt)
        stderr.setLevel(logging.DEBUG if debug else logging.INFO)
        logger.addHandler(stderr)
    for path, level in ((hacf.logfile, logging.INFO), (hacf.debugfile, logging.DEBUG)):
        if not path:
            continue
        try:
            handler: logging.Handler = logging.handlers.WatchedFileHandler(path)
        except OSError as e:
            logger.warning("cannot write log file %s: %s", path, e.strerror)
            continue
        handler.setFormatter(fmt)
        handler.setLevel(level)
        logger.addHandler(handler)
    if hacf.logfacility and os.path.exists("/dev/log"):
        try:
            syslog = logging.handlers.SysLogHandler("/dev/log", facility=hacf.logfacility)
        except (OSError, KeyError):
            logger.warning("cannot log to syslog facility %s", hacf.logfacility)
        else:
            syslog.setFormatter(HeartbeatFormatter(config.node_name, with_time=False))
            syslog.setLevel(logging.INFO)
            logger.addHandler(syslog)
