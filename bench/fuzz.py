"""The million-input fuzz campaign: frames through the engine, text through the config parsers.

    python bench/fuzz.py [--frame-inputs 1000000] [--config-inputs 1000000] [--workers 2]

THE INVARIANTS, checked on every input:

1. No crash: any bytes on any path (serial stream or datagram) give frames or drop events,
   never an exception out of `Engine.receive_frame` / `handle_timer` / `frames_to_send`;
   any text in ha.cf, authkeys or haresources either parses or raises a `ConfigError`
   whose message is one line starting with the file's name.
2. No forgery: an input that does not carry a correctly signed message is never accepted.
   "Accepted" is what the engine shows: a path's or the node's `last_heard` became the
   `now` of this input. Each input gets its own `now`, so it is attributed exactly. When an
   input is accepted, its bytes are cut into frames and decoded independently; every
   verified message in it must be one that the key holder signed during the run (the set
   `signed`) -- otherwise it is counted as a forgery.
3. No replay: a frame the engine accepted on a path is never accepted again on that path,
   and a message already accepted (on any path) never counts as a new message again.

Frame inputs, mixed in every chunk (each row of the table):
- random: random bytes of 0..600, as a datagram or a serial chunk;
- mutated: real frames (Heartbeat 3.0.6 frames captured in tests/vectors, and the engine's
  own in both formats) with bytes flipped, inserted, deleted, truncated and spliced; serial
  ones are fed a byte at a time one time in eight;
- forged: a fresh message (a sequence never used) built and signed, then damaged on
  purpose -- 1 to 3 bit flips anywhere, signed with the wrong key, a field changed after
  signing, or a Heartbeat CRC token in place of the HMAC -- and fed alone;
- replayed: a fresh signed message fed once (it must be accepted), then the same bytes again
  on the same path, an older already-accepted frame on the same path, and an older message
  on the other path (which must not count as new).
Each runs against engines configured for Heartbeat's wire with sha1 and md5 keys and for
hbd's native wire with sha256; every engine accepts both formats on both paths.

Config inputs: random bytes (decoded as UTF-8 with replacement) and "directive soup" --
lines of real directive names, key methods and resource names with values from a pool of
plausible and broken words -- through `parse_hacf`, `parse_authkeys` and `parse_haresources`.

Work is cut into chunks of `--chunk` inputs, each with its own seed (printed), spread over
`--workers` processes. Exits 1 if any crash, forgery or replay was seen.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import random
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import common

from hbd.config.authkeys import parse_authkeys
from hbd.config.hacf import DIRECTIVES, parse_hacf
from hbd.config.haresources import AgentDirs, parse_haresources
from hbd.core.auth import AuthEntry, AuthKeys, AuthMethod
from hbd.core.engine import Engine, EngineSettings, PathKind
from hbd.core.errors import ConfigError, LocalProtocolError
from hbd.core.events import FrameDropped
from hbd.core.model import WireFormat
from hbd.core.receive import FrameFormat, Segment, SerialDemux, classify_datagram
from hbd.core.states import NodeState
from hbd.core.wire import Dropped
from hbd.core.wire import heartbeat as hb
from hbd.core.wire import native as nat
from hbd.testing import fuzzing

VECTORS = common.REPO / "tests" / "vectors" / "heartbeat"
UDP, SERIAL = "bcast:eth0", "serial:/dev/ttyS0"
PATHS = (UDP, SERIAL)
PEER, LOCAL = "hb1", "hb2"
PEER_UUID = bytes(range(16))
GENERATION = 7
CLUSTER = nat.cluster_id((PEER, LOCAL), 694)
FRAME_KINDS = ("random", "mutated", "forged", "replayed", "structured")
OUT_LIMIT = 70  # frames one input may make the engine send: 32 retransmits x 2 paths + beats
SLOW_MS = 1.0  # CPU per input (the receive and the timer turn after it)
CONFIG_KINDS = (
    "ha.cf bytes",
    "ha.cf soup",
    "authkeys bytes",
    "authkeys soup",
    "haresources bytes",
    "haresources soup",
)


@dataclass(frozen=True)
class Setup:
    """One engine configuration: the wire it sends and the key it (and the peer) signs with."""

    name: str
    wire: WireFormat
    key: AuthEntry

    @property
    def keys(self) -> AuthKeys:
        return AuthKeys(active=self.key, entries={self.key.index: self.key})


SETUPS = (
    Setup(
        "heartbeat/sha1", WireFormat.HEARTBEAT, AuthEntry(1, AuthMethod.SHA1, b"hbd-test-sha1-key")
    ),
    Setup("heartbeat/md5", WireFormat.HEARTBEAT, AuthEntry(2, AuthMethod.MD5, b"fuzz-md5-key")),
    Setup("hbd/sha256", WireFormat.HBD, AuthEntry(3, AuthMethod.SHA256, b"fuzz-sha256-key")),
)


@dataclass
class Tally:
    """What one chunk (or the whole run) saw, per input kind."""

    inputs: Counter[str] = field(default_factory=Counter)
    crashes: Counter[str] = field(default_factory=Counter)
    forged: Counter[str] = field(default_factory=Counter)  # accepted without a valid signature
    replayed: Counter[str] = field(default_factory=Counter)  # accepted again
    accepted: Counter[str] = field(default_factory=Counter)  # inputs accepted legitimately
    valid_refused: Counter[str] = field(default_factory=Counter)  # fresh valid frames dropped
    reasons: Counter[str] = field(default_factory=Counter)  # drop reasons / config outcomes
    examples: list[str] = field(default_factory=list)  # the first few failures, reproducible
    types: Counter[str] = field(default_factory=Counter)  # structured: inputs per message type
    reached: Counter[str] = field(default_factory=Counter)  # ... that the engine accepted
    slow: Counter[str] = field(default_factory=Counter)  # ... over SLOW_MS of CPU
    slow_gc: Counter[str] = field(default_factory=Counter)  # ... with a collection in them
    slow_again: Counter[str] = field(default_factory=Counter)  # ... and again when rerun
    structured_fed: int = 0  # structured inputs so far in this chunk (their index)
    slow_at: dict[int, str] = field(default_factory=dict)  # index -> type, over SLOW_MS
    remeasure: frozenset[int] = frozenset()  # a rerun: the indexes to measure again...
    remeasured: dict[int, tuple[str, float]] = field(default_factory=dict)  # ...and what cost
    worst_by_type: Counter[str] = field(default_factory=Counter)  # most CPU, in µs
    amplified: Counter[str] = field(default_factory=Counter)  # ... answered by > OUT_LIMIT
    worst_ms: float = 0.0
    worst_what: str = ""  # the message type (and path) of the input that cost worst_ms
    most_out: int = 0

    def add(self, other: Tally) -> None:
        if other.worst_ms > self.worst_ms:
            self.worst_what = other.worst_what
        self.worst_ms = max(self.worst_ms, other.worst_ms)
        self.most_out = max(self.most_out, other.most_out)
        for t, us in other.worst_by_type.items():
            self.worst_by_type[t] = max(self.worst_by_type[t], us)
        for name in (
            "inputs",
            "crashes",
            "forged",
            "replayed",
            "accepted",
            "valid_refused",
            "reasons",
            "types",
            "reached",
            "slow",
            "slow_gc",
            "slow_again",
            "amplified",
        ):
            getattr(self, name).update(getattr(other, name))
        self.examples += other.examples[: max(0, 5 - len(self.examples))]

    def fail(self, counter: Counter[str], kind: str, what: str) -> None:
        counter[kind] += 1
        if len(self.examples) < 5:
            self.examples.append(what)


# -- frames ---------------------------------------------------------------------------------


COLLECTIONS = [0]  # garbage collections so far in this worker


def _count_collection(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        COLLECTIONS[0] += 1


def make_engine(setup: Setup, node: str = LOCAL) -> Engine:
    return Engine(
        EngineSettings(
            node=node,
            uuid=PEER_UUID if node == PEER else bytes(range(16, 32)),
            generation=GENERATION,
            nodes=(PEER, LOCAL),
            paths=((SERIAL, PathKind.SERIAL), (UDP, PathKind.DATAGRAM)),
            auth=setup.keys,
            keepalive=1.0,
            deadtime=8.0,
            warntime=4.0,
            initdead=16.0,
            wire=setup.wire,
            cluster_id=CLUSTER,
        ),
        now=0.0,
    )


def identity(msg: hb.HaMessage | nat.NativeFrame) -> tuple[str, object]:
    """What a message says, whatever its encoding (the auth token is not part of it)."""
    if isinstance(msg, nat.NativeFrame):
        return ("native", msg)
    return ("heartbeat", hb.classic_signed_text(msg))


def decode_segment(seg: Segment, keys: AuthKeys) -> hb.HaMessage | nat.NativeFrame | Dropped:
    if seg.format is FrameFormat.NATIVE:
        return nat.decode_native(seg.data, keys, CLUSTER)
    if seg.format is FrameFormat.NATIVE_SERIAL:
        return nat.decode_native_serial(seg.data, keys, CLUSTER)
    return hb.decode_frame(seg.data, keys)


def verified_messages(path: str, data: bytes, keys: AuthKeys) -> list[tuple[str, object]]:
    """Every message in `data` whose signature verifies, cut and decoded independently of
    the engine's receive path (a fresh demultiplexer per input)."""
    pieces = SerialDemux().feed(data + b"\x00") if path == SERIAL else [classify_datagram(data)]
    out = []
    for piece in pieces:
        if isinstance(piece, Segment):
            msg = decode_segment(piece, keys)
            if not isinstance(msg, Dropped):
                out.append(identity(msg))
    return out


class Sender:
    """The peer `hb1`: fresh, correctly signed messages in both formats, one seq each."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.seq = 1000

    def fresh(self, rng: random.Random, path: str) -> tuple[bytes, object]:
        """(bytes for `path`, the message's identity) with a sequence never used before."""
        self.seq += 1
        native = rng.random() < 0.5
        return self.encode(self.seq, path, native, self.setup.key)

    def encode(self, seq: int, path: str, native: bool, key: AuthEntry) -> tuple[bytes, object]:
        if native or key.method is AuthMethod.SHA256:
            frame = nat.NativeFrame(
                cluster_id=CLUSTER,
                node_id=nat.node_id(PEER),
                generation=GENERATION,
                seq=seq,
                state=nat.NodeState.ACTIVE,
                deadtime_ms=8000,
                watchdog_ms=0,
                path_hash=nat.path_hash(path),
            )
            data = (
                nat.encode_native_serial(frame, key)
                if path == SERIAL
                else nat.encode_native(frame, key)
            )
            return data, identity(frame)
        msg = self.status(seq)
        data = hb.encode_classic(msg, key) if path == SERIAL else hb.encode_netstring(msg, key)
        return data, identity(msg)

    @staticmethod
    def status(seq: int, load: str = "0.44 0.26 0.13 3/104 15706") -> hb.HaMessage:
        return hb.status_message(
            src=PEER,
            srcuuid=PEER_UUID,
            seq=seq,
            generation=GENERATION,
            status="active",
            deadtime_ms=8000,
            ts=0x6B05FFD4 + seq,
            load=load,
        )


def corpus(setup: Setup) -> list[tuple[str, bytes]]:
    """Real frames: captured from Heartbeat 3.0.6, and the engine's own in both formats."""
    out: list[tuple[str, bytes]] = []
    for line in (VECTORS / "sha1" / "frames.jsonl").read_text().splitlines()[:40]:
        record = json.loads(line)
        out.append((UDP if record["medium"] == "udp" else SERIAL, bytes.fromhex(record["hex"])))
    raw = (VECTORS / "sha1" / "serial-hb1.raw").read_bytes()
    out.append((SERIAL, raw[: raw.rfind(b"<<<\n", 0, 2000) + 4]))
    sha256 = setup.key.method is AuthMethod.SHA256  # Heartbeat's formats cannot sign with it
    for wire in (WireFormat.HBD,) if sha256 else tuple(WireFormat):
        peer = make_engine(Setup(setup.name, wire, setup.key), PEER)
        for t in (0.0, 1.0, 2.0):
            peer.handle_timer(t)
            out += peer.frames_to_send(t)
    return out


def flip_bits(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


class FrameRun:
    """One engine under fuzz, with the bookkeeping that attributes acceptance to inputs."""

    def __init__(self, setup: Setup, tally: Tally) -> None:
        self.setup = setup
        self.engine = make_engine(setup)
        self.tally = tally
        self.now = 0.0
        self.fed = 0
        self.generation = GENERATION  # the peer's, as the structured inputs say it

    def feed(self, kind: str, path: str, data: bytes, *, byte_at_a_time: bool = False) -> bool:
        """Feed one input at a fresh `now`; True if the engine accepted anything from it."""
        self.now += 0.001
        now = self.now
        e = self.engine
        self.tally.inputs[kind] += 1
        try:
            if byte_at_a_time:
                for i in range(len(data)):
                    e.receive_frame(path, data[i : i + 1], now, "10.0.0.1")
            else:
                e.receive_frame(path, data, now, "10.0.0.1")
            if path == SERIAL:
                e.receive_frame(SERIAL, b"\x00", now)  # end any frame this input left open
            self.fed += 1
            if self.fed % 64 == 0:
                e.handle_timer(now)
                e.frames_to_send(now)
            while (event := e.next_event()) is not None:
                if isinstance(event, FrameDropped):
                    self.tally.reasons[event.reason.value] += 1
            status = e.node_status(PEER, now)
        except Exception:
            self.tally.fail(
                self.tally.crashes,
                kind,
                f"{self.setup.name} {kind} {path} {data.hex()}\n{traceback.format_exc()}",
            )
            self.engine = make_engine(self.setup)  # carry on with a clean engine
            return False
        return status.last_heard == now or any(p.last_heard == now for p in status.paths)

    def node_heard(self) -> bool:
        """Whether the last input counted as a new message from the peer."""
        return self.engine.node_status(PEER, self.now).last_heard == self.now


def frame_chunk(seed: int, count: int, remeasure: frozenset[int] = frozenset()) -> Tally:
    """`count` frame inputs, kinds and setups drawn from `seed` (the same inputs every time:
    a rerun measures the structured inputs numbered in `remeasure` again)."""
    rng = random.Random(seed)
    tally = Tally(remeasure=remeasure)
    runs = {
        s.name: (
            FrameRun(s, tally),  # random and mutated inputs
            FrameRun(s, tally),  # forged and replayed probes: a stream no garbage disturbs
            Sender(s),
            corpus(s),
        )
        for s in SETUPS
    }
    signed: set[object] = set()
    for _, _, _, pool in runs.values():
        for path, data in pool:
            signed.update(verified_messages(path, data, SETUPS[0].keys))
            for s in SETUPS:
                signed.update(verified_messages(path, data, s.keys))
    structure_runs = {s.name: (FrameRun(s, tally), Sender(s)) for s in SETUPS}  # signed, odd
    spares = {name: [data for _, data in run[3]] for name, run in runs.items()}  # to splice in
    history: dict[tuple[str, str], list[bytes]] = {}  # (setup, path) -> frames accepted
    # the corpus and engines live for the whole chunk: out of the collector's way, as the
    # daemon does after its start, so a full collection in some input's turn stays short
    gc.collect()
    gc.freeze()
    if _count_collection not in gc.callbacks:
        gc.callbacks.append(_count_collection)
    done = 0
    while done < count:
        setup = rng.choice(SETUPS)
        fuzz, probe, sender, pool = runs[setup.name]
        kind = rng.choices(FRAME_KINDS, weights=(3, 3, 2, 2, 3))[0]
        path = rng.choice(PATHS)
        if kind == "structured":
            done += structured(rng, tally, setup, *structure_runs[setup.name], path)
        elif kind == "random":
            data = rng.randbytes(rng.randint(0, 600))
            if fuzz.feed(kind, path, data):
                check_signed(tally, kind, setup, path, data, signed)
            done += 1
        elif kind == "mutated":
            path, original = rng.choice(pool)
            data = fuzzing.mutate(rng, original, spares[setup.name])
            slow = path == SERIAL and rng.random() < 0.125
            if fuzz.feed(kind, path, data, byte_at_a_time=slow):
                check_signed(tally, kind, setup, path, data, signed)
            done += 1
        elif kind == "forged":
            data, ident = sender.fresh(rng, path)
            signed.add(ident)  # the original was signed; what we feed is a damaged copy
            bad = forge(rng, sender, data, path)
            if bad == data:
                continue  # two flips of one bit: nothing was damaged
            if probe.feed(kind, path, bad):
                check_signed(tally, kind, setup, path, bad, signed - {ident}, allow=ident)
                at = next((i for i, (x, y) in enumerate(zip(data, bad, strict=False)) if x != y), 0)
                common.note(
                    f"{setup.name}: a damaged copy was accepted as the message that was signed:"
                    f" {data[at - 12 : at + 6]!r} -> {bad[at - 12 : at + 6]!r}"
                )
            done += 1
        else:
            done += replay_probe(rng, tally, setup, probe, sender, path, signed, history)
    return tally


def forge(rng: random.Random, sender: Sender, data: bytes, path: str) -> bytes:
    """A damaged copy of the freshly signed `data`."""
    how = rng.randrange(4)
    key = sender.setup.key
    if how == 0:
        return flip_bits(rng, data)
    native = data[:1] == b"\xb8" or (path == SERIAL and not data.startswith(b">>>"))
    if how == 1:  # the right index, the wrong key
        wrong = AuthEntry(key.index, key.method, key.key + b"!")
        return sender.encode(sender.seq, path, native, wrong)[0]
    if how == 2 and not native:  # a field changed after signing, the old token kept
        return data.replace(b"0.44 0.26", b"9.44 0.26", 1)
    if how == 3 and not native:  # Heartbeat's CRC "signature" under the real key's index
        crc = AuthEntry(key.index, AuthMethod.CRC, b"")
        return sender.encode(sender.seq, path, False, crc)[0]
    return flip_bits(rng, data)


def structured(
    rng: random.Random, tally: Tally, setup: Setup, run: FrameRun, sender: Sender, path: str
) -> int:
    """One correctly signed message with random but well-formed fields (some dropped,
    replaced or added), of any type either format has: it passes the signature and reaches
    the handlers. Counted per type; the CPU it costs (its receive and the timer turn after
    it) and the frames the engine sends in answer are measured. Returns inputs fed (0 when
    the drawn message cannot be encoded)."""
    key = setup.key
    sender.seq += 1
    native = key.method is AuthMethod.SHA256 or rng.random() < 0.4
    try:
        if native:
            what, frame = fuzzing.signed_native_frame(
                rng,
                cluster=CLUSTER,
                node_id=nat.node_id(PEER),
                generation=run.generation,
                seq=sender.seq,
                path_hash=nat.path_hash(path),
            )
            what = f"native {what}"
            enc = nat.encode_native_serial if path == SERIAL else nat.encode_native
            data = enc(frame, key)
        else:
            what, msg = fuzzing.signed_heartbeat_message(
                rng,
                src=PEER,
                srcuuid=PEER_UUID,
                dest=LOCAL,
                generation=run.generation,
                seq=sender.seq,
            )
            data = hb.encode_classic(msg, key) if path == SERIAL else hb.encode_netstring(msg, key)
    except LocalProtocolError:
        return 0  # a field the wire cannot carry: not an input anyone can send
    tally.types[what] += 1
    index = tally.structured_fed
    tally.structured_fed += 1
    collections = COLLECTIONS[0]
    started = time.thread_time_ns()
    accepted = run.feed("structured", path, data)
    now = run.now
    try:
        run.engine.handle_timer(now)
        sent = len(run.engine.frames_to_send(now))
    except Exception:
        tally.fail(
            tally.crashes, "structured", f"{setup.name} {what} timer\n{traceback.format_exc()}"
        )
        run.engine = make_engine(setup)
        return 1
    ms = (time.thread_time_ns() - started) / 1e6
    if index in tally.remeasure:
        tally.remeasured[index] = (what, ms)
    newest = run.engine.membership.newest_heard(PEER)
    if newest is not None:  # a jump the engine took: the peer goes on from there
        run.generation = max(run.generation, newest[0])
        sender.seq = max(sender.seq, newest[1])
        if sender.seq > 0xFFFF0000:  # no sequence left: a new incarnation
            run.generation, sender.seq = run.generation + 1, 1000
    if run.engine.node_status(PEER, now).state is NodeState.DEAD:
        run.generation += 1  # it left (or was declared dead): it comes back as a new one
    if accepted:
        tally.reached[what] += 1
        tally.accepted["structured"] += 1
    if ms > tally.worst_ms:
        tally.worst_ms, tally.worst_what = ms, f"{what} on {path}, {setup.name}"
    tally.most_out = max(tally.most_out, sent)
    tally.worst_by_type[what] = max(tally.worst_by_type[what], round(ms * 1000))
    if ms > SLOW_MS:
        tally.slow[what] += 1
        tally.slow_at[index] = what
        if COLLECTIONS[0] != collections:
            tally.slow_gc[what] += 1
    if sent > OUT_LIMIT:
        tally.fail(tally.amplified, what, f"{setup.name} {what} {path}: {sent} frames out")
    return 1


def check_signed(
    tally: Tally,
    kind: str,
    setup: Setup,
    path: str,
    data: bytes,
    signed: set[object],
    allow: object = None,
) -> None:
    """The engine accepted `data`: every verified message in it must have been signed."""
    messages = verified_messages(path, data, setup.keys)
    unsigned = [m for m in messages if m not in signed and m != allow]
    if unsigned or not messages:
        tally.fail(tally.forged, kind, f"{setup.name} {kind} {path} accepted {data.hex()}")
    else:
        tally.accepted[kind] += 1


def replay_probe(
    rng: random.Random,
    tally: Tally,
    setup: Setup,
    probe: FrameRun,
    sender: Sender,
    path: str,
    signed: set[object],
    history: dict[tuple[str, str], list[bytes]],
) -> int:
    """A fresh frame (must be accepted), then replays of it and of older ones; inputs fed."""
    kind = "replayed"
    data, ident = sender.fresh(rng, path)
    signed.add(ident)
    if probe.feed("replayed", path, data):
        tally.accepted[kind] += 1
    else:
        tally.fail(
            tally.valid_refused, kind, f"{setup.name} fresh frame refused on {path}: {data.hex()}"
        )
    past = history.setdefault((setup.name, path), [])
    other = SERIAL if path == UDP else UDP
    older = rng.choice(past) if past else data
    attempts = [(path, data), (path, older)]
    if past:
        attempts.append((other, rng.choice(past)))
    for where, again in attempts:
        accepted = probe.feed(kind, where, again)
        if where == path and accepted:
            tally.fail(
                tally.replayed, kind, f"{setup.name} replay on {where} accepted: {again.hex()}"
            )
        elif where != path and probe.node_heard():
            tally.fail(
                tally.replayed,
                kind,
                f"{setup.name} old message counted new on {where}: {again.hex()}",
            )
    past.append(data)
    del past[:-300]
    return 1 + len(attempts)


# -- configuration --------------------------------------------------------------------------

WORDS = [*fuzzing.VALUES, *fuzzing.TRICKY, *fuzzing.RESOURCES]
HACF_HEADS = sorted(DIRECTIVES)
SOUP_HEADS = {
    "ha.cf": HACF_HEADS,
    "authkeys": list(fuzzing.AUTHKEYS_HEADS),
    "haresources": list(fuzzing.HARESOURCES_HEADS),
}
GOOD = {
    "ha.cf": "node ha-01 ha-02\nbcast eth0\nauto_failback on\n",
    "authkeys": "auth 1\n1 sha1 Correct-Horse-Battery-Staple\n",
    "haresources": "",
}


def word(rng: random.Random) -> str:
    """A value from the pool, or (one time in seven) up to 8 random characters."""
    if rng.random() < 0.15:
        chars = (rng.choice((rng.randrange(32, 127), rng.randrange(0xD800))) for _ in range(8))
        return "".join(map(chr, chars))[: rng.randint(0, 8)]
    return rng.choice(WORDS)


def soup(rng: random.Random, heads: list[str], file: str) -> str:
    lines = []
    for _ in range(rng.randint(0, 12)):
        head = rng.choice(heads)
        if file == "ha.cf" and rng.random() < 0.1:
            head = head.upper()
        values = [word(rng) for _ in range(1 if rng.random() < 0.5 else rng.randint(0, 6))]
        lines.append(
            rng.choice(fuzzing.SEPARATORS).join([head, *values]) + rng.choice(fuzzing.ENDINGS)
        )
    text = "\n".join(lines)
    if file == "authkeys" and rng.random() < 0.5:
        index = rng.choice(["1", "2", "15"])
        method = rng.choice(["crc", "md5", "sha1", "sha256"])
        text += f"\n{index} {method} {word(rng)}"
    return (GOOD[file] if rng.random() < 0.5 else "") + text


PARSERS: dict[str, Callable[[str, AgentDirs], object]] = {
    "ha.cf": lambda text, dirs: parse_hacf(text, "ha.cf"),
    "authkeys": lambda text, dirs: parse_authkeys(text, "authkeys"),
    "haresources": lambda text, dirs: parse_haresources(text, fuzzing.NODES, dirs, "haresources"),
}


def config_chunk(seed: int, count: int) -> Tally:
    rng = random.Random(seed)
    tally = Tally()
    dirs = AgentDirs("/nonexistent/hbd-fuzz", "/nonexistent/hbd-fuzz-initd", "/nonexistent/ocf")
    for _ in range(count):
        kind = rng.choice(CONFIG_KINDS)
        file, how = kind.split()
        if how == "bytes":
            text = rng.randbytes(rng.randint(0, 400)).decode("utf-8", "replace")
        else:
            text = soup(rng, SOUP_HEADS[file], file)
        tally.inputs[kind] += 1
        try:
            PARSERS[file](text, dirs)
            tally.reasons["parsed"] += 1
        except ConfigError as error:
            message = str(error)
            if not message.startswith(file) or "\n" in message or "\r" in message:
                tally.fail(tally.crashes, kind, f"bad ConfigError {message!r} for {text!r}")
            else:
                tally.reasons["ConfigError"] += 1
        except Exception:
            tally.fail(tally.crashes, kind, f"{kind} {text!r}\n{traceback.format_exc()}")
    return tally


# -- running --------------------------------------------------------------------------------


def run_chunk(task: tuple[str, int, int]) -> Tally:
    """One chunk. A frame chunk with inputs over SLOW_MS is run again from its seed and
    those inputs measured a second time: one that is slow twice costs that much; one that
    is not was slowed by the machine (a preempted or migrated worker, a cold cache)."""
    which, seed, count = task
    if which != "frame":
        return config_chunk(seed, count)
    tally = frame_chunk(seed, count)
    if tally.slow_at:
        again = frame_chunk(seed, count, remeasure=frozenset(tally.slow_at))
        for index, what in tally.slow_at.items():
            rerun = again.remeasured.get(index)
            if rerun is None or rerun[0] != what or rerun[1] > SLOW_MS:
                tally.slow_again[what] += 1  # slow twice (or not the same input: counted)
    return tally


def tasks(which: str, total: int, chunk: int, seed: int) -> list[tuple[str, int, int]]:
    out = []
    for i, start in enumerate(range(0, total, chunk)):
        out.append((which, seed * 1_000_003 + i, min(chunk, total - start)))
    return out


def rows(tally: Tally, kinds: tuple[str, ...], frames: bool) -> list[list[object]]:
    out: list[list[object]] = []
    for kind in (*kinds, "total"):

        def pick(counter: Counter[str], kind: str = kind) -> int:
            return sum(counter.values()) if kind == "total" else counter[kind]

        row: list[object] = [kind, f"{pick(tally.inputs):,}", pick(tally.crashes)]
        if frames:
            row += [
                pick(tally.forged),
                pick(tally.replayed),
                f"{pick(tally.accepted):,}",
                pick(tally.valid_refused),
            ]
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frame-inputs", type=int, default=1_000_000)
    parser.add_argument("--config-inputs", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=20_000, help="inputs per task (one seed each)")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument(
        "--coverage",
        type=int,
        default=0,
        metavar="N",
        help="also run N frame inputs in this process under coverage.py and print the lines "
        "of the receive path they reached",
    )
    args = parser.parse_args(argv)

    work = tasks("frame", args.frame_inputs, args.chunk, args.seed)
    work += tasks("config", args.config_inputs, args.chunk, args.seed)
    totals = {"frame": Tally(), "config": Tally()}
    seconds = {"frame": 0.0, "config": 0.0}
    start = time.monotonic()
    with multiprocessing.Pool(args.workers) as pool:
        for task, (tally, took) in zip(work, pool.imap(timed_chunk, work), strict=True):
            totals[task[0]].add(tally)
            seconds[task[0]] += took
            done = sum(sum(t.inputs.values()) for t in totals.values())
            common.note(f"fuzz: {done:,} inputs, {time.monotonic() - start:.0f} s")
    wall = time.monotonic() - start

    frame, config = totals["frame"], totals["config"]
    print(f"seed {args.seed}, {args.workers} workers, chunks of {args.chunk:,}, {wall:.0f} s wall")
    print(
        f"engine setups: {', '.join(s.name for s in SETUPS)};"
        " paths: serial stream and UDP datagram\n"
    )
    print(f"frame fuzzers ({seconds['frame']:.0f} CPU-s in workers)\n")
    headers = [
        "input",
        "inputs",
        "crashes",
        "forged accepted",
        "replays accepted",
        "accepted (signed)",
        "fresh refused",
    ]
    print(common.table(headers, rows(frame, FRAME_KINDS, True)))
    print("\ndrop reasons seen:", ", ".join(f"{r} {n:,}" for r, n in frame.reasons.most_common()))
    print(
        f"\nstructured (signed) inputs by message type: worst CPU {frame.worst_ms:.2f} ms an input"
        f" ({frame.worst_what}; receive + timer turn, a garbage collection included if one"
        f" fell there), most frames sent in answer {frame.most_out}\n"
    )
    type_rows = [
        [
            t,
            f"{n:,}",
            f"{frame.reached[t]:,}",
            f"{frame.worst_by_type[t] / 1000:.2f}",
            f"{frame.slow[t]} ({frame.slow_gc[t]}) {frame.slow_again[t]}" if frame.slow[t] else "0",
            frame.amplified[t],
        ]
        for t, n in sorted(frame.types.items())
    ]
    print(
        common.table(
            [
                "message type",
                "inputs",
                "heard as new",
                "worst ms",
                f"> {SLOW_MS:g} ms CPU (a collection in it) again",
                f"> {OUT_LIMIT} out",
            ],
            type_rows,
        )
    )
    print(f"\nconfiguration fuzzers ({seconds['config']:.0f} CPU-s in workers)\n")
    print(common.table(["input", "inputs", "crashes"], rows(config, CONFIG_KINDS, False)))
    print("\noutcomes:", ", ".join(f"{r} {n:,}" for r, n in config.reasons.most_common()))
    print(
        "\ncrashes: exceptions out of the engine or a parser, or a ConfigError not naming its"
        " file on one line.\nforged accepted: inputs the engine accepted that carry a message"
        " nobody signed.\nreplays accepted: a frame accepted twice on one path, or an old"
        " message counted as new.\naccepted (signed): inputs accepted legitimately (a real"
        " frame survived the mutation, or a fresh probe).\nfresh refused: fresh valid probe"
        " frames the engine dropped (should be 0)."
    )
    if args.coverage:
        print(f"\ncode reached by {args.coverage:,} frame inputs (coverage.py, lines)\n")
        print(common.table(["module", "lines", "reached", "%"], coverage_rows(args)))
    bad = sum(frame.crashes.values()) + sum(config.crashes.values())
    bad += sum(frame.forged.values()) + sum(frame.replayed.values())
    bad += sum(frame.amplified.values())
    for example in (frame.examples + config.examples)[:5]:
        print("\nexample:", example[:3000], file=sys.stderr)
    if bad or sum(frame.valid_refused.values()):
        print(f"\nFAILED: {bad} crashes/forgeries/replays", file=sys.stderr)
        return 1
    return 0


COVERED = (
    "hbd/core/engine.py",
    "hbd/core/membership.py",
    "hbd/core/receive.py",
    "hbd/core/advert.py",
    "hbd/core/wire/heartbeat.py",
    "hbd/core/wire/ha_control.py",
    "hbd/core/wire/ha_message.py",
    "hbd/core/wire/native.py",
    "hbd/core/wire/replay.py",
)


def coverage_rows(args: argparse.Namespace) -> list[list[object]]:
    """Frame inputs run under coverage.py in a fresh interpreter (coverage starts before hbd
    is imported, so definitions count too): per module of the receive path, its executable
    lines and how many were reached."""
    import subprocess

    files = [str(common.REPO / name) for name in COVERED]
    script = (
        "import json, sys, coverage\n"
        f"cov = coverage.Coverage(include={files!r}, data_file=None)\n"
        "cov.start()\n"
        f"sys.path.insert(0, {str(common.REPO / 'bench')!r})\n"
        "import fuzz\n"
        f"fuzz.frame_chunk({args.seed}, {args.coverage})\n"
        "cov.stop()\n"
        f"print(json.dumps([cov.analysis2(f)[1:4:2] for f in {files!r}]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    out: list[list[object]] = []
    for name, (statements, missing) in zip(
        COVERED, json.loads(done.stdout.splitlines()[-1]), strict=True
    ):
        reached = len(statements) - len(missing)
        share = 100 * reached / len(statements) if statements else 100.0
        out.append([name, len(statements), reached, f"{share:.0f}"])
    return out


def timed_chunk(task: tuple[str, int, int]) -> tuple[Tally, float]:
    start = time.process_time()
    tally = run_chunk(task)
    return tally, time.process_time() - start


if __name__ == "__main__":
    raise SystemExit(main())
