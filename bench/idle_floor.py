"""The floor under hbd's idle cost: a Python process that only sends and reads frames.

    python bench/idle_floor.py --loop asyncio|epoll --keepalive 0.2 --bcast eth0
                               --ucast eth1 PEER --serial TTY [--port 694]

Run by bench/idle.py in each namespace of its "floor" clusters, with the same three paths
as the hbd cluster beside it: every keepalive it sends one 44-byte datagram on `bcast`
and on `ucast` and 48 bytes on the serial line (the size of hbd's native heartbeat), and it
reads whatever arrives, decoding and deciding nothing. Its own broadcasts are dropped in
the kernel as hbd's are (the same socket filter). So its wake-ups are hbd's -- the timer,
the peer's datagrams, the peer's serial frame -- and its CPU is what the interpreter costs
to be woken that often: with asyncio's event loop (as hbd runs) or a bare epoll loop.
Whatever hbd uses beyond the matching row is hbd's own work.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import sys
import termios
import time
import tty
from collections.abc import Callable

from hbd.links.udp import OWN_BROADCASTS_DROPPED, attach_filter, interface_ipv4

SO_BINDTODEVICE = 25
FRAME = b"\xb8" + bytes(43)  # as long as a native heartbeat; nobody decodes it
SERIAL_FRAME = bytes(range(1, 48)) + b"\x00"


def sockets(bcast: str, ucast: str, port: int) -> tuple[socket.socket, socket.socket]:
    _address, broadcast = interface_ipv4(bcast)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    b.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, bcast.encode())
    b.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    attach_filter(b, OWN_BROADCASTS_DROPPED)
    b.bind((broadcast, port))
    b.setblocking(False)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    u.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, ucast.encode())
    u.bind(("", port))
    u.setblocking(False)
    return b, u


def open_serial(path: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(fd)
    attrs = termios.tcgetattr(fd)
    attrs[4] = attrs[5] = termios.B19200
    termios.tcsetattr(fd, termios.TCSANOW, attrs)
    return fd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", choices=("asyncio", "epoll"), required=True)
    parser.add_argument("--keepalive", type=float, required=True)
    parser.add_argument("--bcast", required=True)
    parser.add_argument("--ucast", nargs=2, metavar=("DEV", "PEER"), required=True)
    parser.add_argument("--serial", required=True)
    parser.add_argument("--port", type=int, default=694)
    args = parser.parse_args(argv)
    b, u = sockets(args.bcast, args.ucast[0], args.port)
    serial = open_serial(args.serial)
    _address, broadcast = interface_ipv4(args.bcast)
    peer = (args.ucast[1], args.port)

    def send() -> None:
        b.sendto(FRAME, (broadcast, args.port))
        u.sendto(FRAME, peer)
        os.write(serial, SERIAL_FRAME)

    def drain(read: Callable[[], bytes]) -> None:
        try:
            while read():
                pass
        except BlockingIOError:
            pass

    readers: dict[int, Callable[[], bytes]] = {
        b.fileno(): lambda: b.recv(65535),
        u.fileno(): lambda: u.recv(65535),
        serial: lambda: os.read(serial, 4096),
    }
    if args.loop == "epoll":
        poller = select.epoll()
        for fd in readers:
            poller.register(fd, select.EPOLLIN)
        due = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= due:
                send()
                due = max(due + args.keepalive, now)
            for fd, _mask in poller.poll(max(0.0, due - time.monotonic())):
                drain(readers[fd])

    import asyncio  # only here: the epoll floor's memory is without it

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for fd, read in readers.items():
            loop.add_reader(fd, drain, read)

        def beat(at: float) -> None:
            send()
            loop.call_at(at + args.keepalive, beat, at + args.keepalive)

        beat(loop.time())
        await asyncio.Event().wait()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
