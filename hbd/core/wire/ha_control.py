"""Heartbeat's status and control messages: builders in Heartbeat's field order, and parsers.

Every message Heartbeat sends ends with the fields `add_control_msg_fields` appends, in
this order (captured from 3.0.6):

    [destuuid]  (1) binary, the uuid of `dest`, when the message has a `dest`
    src         sender node name (uname -n)
    srcuuid     (1) binary, 16 bytes (/var/lib/heartbeat/hb_uuid)
    seq         hex; one counter for ALL sequenced messages of a node, starting at 1.
                `NS_*` messages have no seq (they sit outside retransmission).
    hg          hex heartbeat generation, +1 on every start (hb_generation file)
    ts          hex seconds since the epoch (wall clock)
    ld          /proc/loadavg line, informational ("n/a" when unreadable); not on NS_*
    ttl         decimal, hopfudge (1) + number of nodes
    auth        "<index> <hex>" (added by the codec)

Numbers are `%lx` hex except `ttl`, `protocol` and NS_rexmit's `firstseq`/`lastseq`, which
Heartbeat writes with `%d` (and reads with atoi).

What a Heartbeat peer expects from us (see the report in tests/vectors/heartbeat/README.md):
- `status` every keepalive (st=init/up/active/dead, dt = our deadtime in ms, protocol=1 --
  without `protocol` Heartbeat turns off flow control, acks and reqnodes for everyone);
- an answer `repnodes` (nodelist with every node, each followed by a space) to its
  `reqnodes` -- it stays `up` and re-asks every second until it gets one;
- `NS_ackmsg` with `ackseq` = the seq we have received up to, about every 10th message
  (Heartbeat acks when seq % 10 == a per-peer random trigger) -- unacked, its send window
  (FLOWCONTROL_LIMIT = half of its 500-message history) eventually stalls its clients;
- for `NS_rexmit firstseq..lastseq` addressed to us: resend those messages with their
  original seq, or `NS_nak_rexmit firstseq=<hex seq> info=<reason>` for ones we lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hbd.core.errors import LocalProtocolError
from hbd.core.wire.ha_message import FieldType, HaField, HaMessage, parse_hex

PROTOCOL_VERSION = 1


def _envelope(
    body: list[HaField],
    *,
    src: str,
    srcuuid: bytes,
    seq: int | None,
    generation: int,
    ts: int,
    ttl: int,
    load: str | None,
    destuuid: bytes | None = None,
) -> HaMessage:
    fields = list(body)
    if destuuid is not None:
        fields.append(HaField("destuuid", destuuid, FieldType.BINARY))
    fields += [HaField("src", src), HaField("srcuuid", srcuuid, FieldType.BINARY)]
    if seq is not None:
        fields.append(HaField("seq", f"{seq:x}"))
    fields += [HaField("hg", f"{generation:x}"), HaField("ts", f"{ts:x}")]
    if load is not None:
        fields.append(HaField("ld", load))
    fields.append(HaField("ttl", str(ttl)))
    return HaMessage(tuple(fields))


ACK_FIELD = "hbdack"  # hbd's extension to t=status: what it heard (hbd.core.acks)
WATCHDOG_FIELD = "hbdwd"  # hbd's extension to t=status: the sender's watchdog timeout (hex ms)


def status_message(
    src: str,
    srcuuid: bytes,
    seq: int,
    generation: int,
    status: str,
    deadtime_ms: int,
    ts: int,
    *,
    ttl: int = 3,
    load: str = "n/a",
    protocol: int | None = PROTOCOL_VERSION,
    watchdog_ms: int | None = None,
    acks: str | None = None,
) -> HaMessage:
    """A heartbeat: `t=status st dt protocol` then the envelope (auth added by the codec).

    hbd adds `hbdwd` (hex milliseconds; 0 without a watchdog), so an hbd peer knows how
    long to wait before taking over (the takeover budget) and that the sender is hbd;
    Heartbeat ignores fields it does not know. `watchdog_ms=None` builds Heartbeat's own.
    `acks` is hbd's `hbdack` (`hbd.core.acks`): the newest message heard from each peer."""
    body = [HaField("t", "status"), HaField("st", status), HaField("dt", f"{deadtime_ms:x}")]
    if protocol is not None:
        body.append(HaField("protocol", str(protocol)))
    if watchdog_ms is not None:
        body.append(HaField(WATCHDOG_FIELD, f"{watchdog_ms:x}"))
    if acks is not None:
        body.append(HaField(ACK_FIELD, acks))
    return _envelope(
        body, src=src, srcuuid=srcuuid, seq=seq, generation=generation, ts=ts, ttl=ttl, load=load
    )


def advert_message(
    src: str,
    srcuuid: bytes,
    seq: int,
    generation: int,
    ts: int,
    payload: bytes,
    *,
    ttl: int = 3,
    load: str = "n/a",
) -> HaMessage:
    """hbd's resource-group advert (hbd.core.advert) between hbd nodes using Heartbeat's
    format: `t=hbd-advert advert=HEX`. A Heartbeat peer ignores a type it does not know."""
    return _envelope(
        [HaField("t", "hbd-advert"), HaField("advert", payload.hex())],
        src=src,
        srcuuid=srcuuid,
        seq=seq,
        generation=generation,
        ts=ts,
        ttl=ttl,
        load=load,
    )


RESOURCES_HELD = ("none", "local", "foreign", "all")  # Heartbeat's rsc_hold values


def resource_message(
    src: str,
    srcuuid: bytes,
    seq: int,
    generation: int,
    ts: int,
    held: str,
    stable: bool,
    *,
    comment: str | None = None,
    ttl: int = 3,
    load: str = "n/a",
) -> HaMessage:
    """Heartbeat's `t=resource` (T_RESOURCES, haresources mode with nice_failback): which
    groups the sender holds (`rsc_hold` none/local/foreign/all, `rtype=full`) and whether
    its resource transitions are over (`isstable` 1/0); `info` is an optional comment
    (Heartbeat writes `shutdown` or `mach_down` there).

    A Heartbeat node that goes active sends `t=starting` and stays in its "starting"
    resource state -- acquiring none of its own groups and refusing to shut down ("Shutdown
    delayed until current resource activity finishes.") -- until a peer answers with this
    message marked stable."""
    if held not in RESOURCES_HELD:
        raise LocalProtocolError(f"rsc_hold must be one of {RESOURCES_HELD}, not {held!r}")
    body = [
        HaField("t", "resource"),
        HaField("rsc_hold", held),
        HaField("rtype", "full"),
        HaField("isstable", "1" if stable else "0"),
    ]
    if comment is not None:
        body.append(HaField("info", comment))
    return _envelope(
        body, src=src, srcuuid=srcuuid, seq=seq, generation=generation, ts=ts, ttl=ttl, load=load
    )


def cluster_message(
    src: str,
    srcuuid: bytes,
    seq: int,
    generation: int,
    ts: int,
    mtype: str,
    fields: Sequence[tuple[str, str]],
    *,
    ttl: int = 3,
    load: str = "n/a",
) -> HaMessage:
    """Any sequenced cluster message, as Heartbeat's `ha_clustermsg` sends one (the resource
    protocol's `t=starting`, `t=ask_resources`, `t=hb_takeover`, `t=ip-request-resp`...):
    `t`, then `fields` in order, then the envelope."""
    if not mtype or any(c in mtype for c in "=\n"):
        raise LocalProtocolError(f"message type {mtype!r} is empty or holds '=' or a newline")
    body = [HaField("t", mtype)]
    for name, value in fields:
        if not name or any(c in name for c in "=\n") or "\n" in value:
            raise LocalProtocolError(f"field {name!r}={value!r} cannot be sent")
        body.append(HaField(name, value))
    return _envelope(
        body, src=src, srcuuid=srcuuid, seq=seq, generation=generation, ts=ts, ttl=ttl, load=load
    )


def echo_message(
    src: str,
    srcuuid: bytes,
    generation: int,
    ts: int,
    nonce: int,
    *,
    reply_to: str | None = None,
    ttl: int = 3,
) -> HaMessage:
    """hbd's round-trip probe on one path: `t=hbd-echo echo=NONCE`, answered on the same
    path by `t=hbd-echo-reply dest=SENDER echo=NONCE`. Unsequenced, like NS_ackmsg, so a
    message sent on one path only leaves no gap in the others' sequence numbers."""
    body = [HaField("t", "hbd-echo-reply" if reply_to else "hbd-echo")]
    if reply_to:
        body.append(HaField("dest", reply_to))
    body.append(HaField("echo", f"{nonce:x}"))
    return _envelope(
        body,
        src=src,
        srcuuid=srcuuid,
        seq=None,
        generation=generation,
        ts=ts,
        ttl=ttl,
        load=None,
    )


def shutdone_message(
    src: str,
    srcuuid: bytes,
    seq: int,
    generation: int,
    ts: int,
    *,
    ttl: int = 3,
    load: str = "n/a",
) -> HaMessage:
    """The last message of a clean stop: `t=shutdone st=dead`. A Heartbeat peer logs
    "Received shutdown notice" and takes over at once instead of waiting for deadtime."""
    return _envelope(
        [HaField("t", "shutdone"), HaField("st", "dead")],
        src=src,
        srcuuid=srcuuid,
        seq=seq,
        generation=generation,
        ts=ts,
        ttl=ttl,
        load=load,
    )


def reqnodes_message(
    src: str,
    srcuuid: bytes,
    dest: str,
    destuuid: bytes | None,
    seq: int,
    generation: int,
    ts: int,
    *,
    ttl: int = 3,
    load: str = "n/a",
) -> HaMessage:
    """Ask `dest` for the node list. Heartbeat sends this once all nodes are heard from
    (if every peer speaks protocol 1) and repeats it each second until a repnodes comes."""
    return _envelope(
        [HaField("t", "reqnodes"), HaField("dest", dest)],
        src=src,
        srcuuid=srcuuid,
        seq=seq,
        generation=generation,
        ts=ts,
        ttl=ttl,
        load=load,
        destuuid=destuuid,
    )


def pack_nodelist(nodes: Sequence[str]) -> str:
    """Heartbeat's node list: each name followed by one space; an empty list is " "."""
    return "".join(f"{n} " for n in nodes) or " "


def repnodes_message(
    src: str,
    srcuuid: bytes,
    dest: str,
    destuuid: bytes | None,
    seq: int,
    generation: int,
    ts: int,
    nodelist: Sequence[str],
    delnodelist: Sequence[str] = (),
    *,
    ttl: int = 3,
    load: str = "n/a",
) -> HaMessage:
    """The reply to reqnodes. The receiver REMOVES every normal node missing from
    `nodelist` and adds new ones, so list every node of the cluster (including both of us)."""
    body = [
        HaField("dest", dest),
        HaField("t", "repnodes"),
        HaField("nodelist", pack_nodelist(nodelist)),
        HaField("delnodelist", pack_nodelist(delnodelist)),
    ]
    return _envelope(
        body,
        src=src,
        srcuuid=srcuuid,
        seq=seq,
        generation=generation,
        ts=ts,
        ttl=ttl,
        load=load,
        destuuid=destuuid,
    )


def ack_message(
    src: str,
    srcuuid: bytes,
    dest: str,
    destuuid: bytes | None,
    ackseq: int,
    generation: int,
    ts: int,
    *,
    ttl: int = 3,
) -> HaMessage:
    """`NS_ackmsg`: we have received `dest`'s messages up to `ackseq` (no seq, no ld)."""
    body = [HaField("t", "NS_ackmsg"), HaField("dest", dest), HaField("ackseq", f"{ackseq:x}")]
    return _envelope(
        body,
        src=src,
        srcuuid=srcuuid,
        seq=None,
        generation=generation,
        ts=ts,
        ttl=ttl,
        load=None,
        destuuid=destuuid,
    )


def rexmit_message(
    src: str,
    srcuuid: bytes,
    dest: str,
    destuuid: bytes | None,
    firstseq: int,
    lastseq: int,
    generation: int,
    ts: int,
    *,
    ttl: int = 3,
) -> HaMessage:
    """`NS_rexmit`: ask `dest` to resend firstseq..lastseq (decimal, as Heartbeat writes
    and reads them; Heartbeat itself asks for one seq per message)."""
    body = [
        HaField("t", "NS_rexmit"),
        HaField("dest", dest),
        HaField("firstseq", str(firstseq)),
        HaField("lastseq", str(lastseq)),
    ]
    return _envelope(
        body,
        src=src,
        srcuuid=srcuuid,
        seq=None,
        generation=generation,
        ts=ts,
        ttl=ttl,
        load=None,
        destuuid=destuuid,
    )


def nak_rexmit_message(
    src: str,
    srcuuid: bytes,
    dest: str,
    destuuid: bytes | None,
    seq: int,
    reason: str,
    generation: int,
    ts: int,
    *,
    ttl: int = 3,
) -> HaMessage:
    """`NS_nak_rexmit`: we cannot resend `seq` (hex); the peer logs it as irretrievably lost
    and stops waiting for it."""
    body = [
        HaField("t", "NS_nak_rexmit"),
        HaField("firstseq", f"{seq:x}"),
        HaField("dest", dest),
        HaField("info", reason),
    ]
    return _envelope(
        body,
        src=src,
        srcuuid=srcuuid,
        seq=None,
        generation=generation,
        ts=ts,
        ttl=ttl,
        load=None,
        destuuid=destuuid,
    )


# --------------------------------------------------------------------------- parsers


@dataclass(frozen=True, slots=True)
class HaOrigin:
    """The envelope every Heartbeat message carries."""

    src: str
    srcuuid: bytes | None
    seq: int | None  # None on NS_* messages
    generation: int
    ts: int
    ttl: int | None


def parse_origin(msg: HaMessage) -> HaOrigin | None:
    """The envelope, or None when src/ts are missing or seq/hg/ts are not hex (Heartbeat
    drops such messages too). `hg` may be absent (old peers): generation 0."""
    src, ts = msg.get("src"), msg.get_hex("ts")
    seq_text, hg_text = msg.get("seq"), msg.get("hg")
    seq = parse_hex(seq_text)
    gen = parse_hex(hg_text) if hg_text is not None else 0
    if src is None or ts is None or gen is None or (seq_text is not None and seq is None):
        return None
    ttl_text = msg.get("ttl")
    ttl = parse_decimal(ttl_text)
    return HaOrigin(src, msg.get_binary("srcuuid"), seq, gen, ts, ttl)


@dataclass(frozen=True, slots=True)
class HaStatus:
    """A parsed `t=status` heartbeat."""

    origin: HaOrigin
    status: str
    deadtime_ms: int | None  # the sender's deadtime (`dt`); Heartbeat adopts it for that node
    protocol: int | None
    load: str | None
    watchdog_ms: int | None = None  # hbd's `hbdwd`: the sender's watchdog timeout
    from_hbd: bool = False  # it carried `hbdwd`: the sender is hbd, not Heartbeat

    @property
    def src(self) -> str:
        return self.origin.src

    @property
    def seq(self) -> int | None:
        return self.origin.seq

    @property
    def generation(self) -> int:
        return self.origin.generation


def parse_status(msg: HaMessage, origin: HaOrigin | None = None) -> HaStatus | None:
    """A status message, or None if `msg` is not one or lacks st/src/seq/ts (`origin`: its
    `parse_origin`, when the caller has it already)."""
    origin = origin if origin is not None else parse_origin(msg)
    status = msg.get("st")
    if msg.get("t") != "status" or origin is None or origin.seq is None or not status:
        return None
    proto = msg.get("protocol")
    return HaStatus(
        origin,
        status,
        msg.get_hex("dt"),
        parse_decimal(proto),
        msg.get("ld"),
        msg.get_hex(WATCHDOG_FIELD) or None,
        msg.get(WATCHDOG_FIELD) is not None,
    )


@dataclass(frozen=True, slots=True)
class HaReqNodes:
    origin: HaOrigin
    dest: str


@dataclass(frozen=True, slots=True)
class HaRepNodes:
    origin: HaOrigin
    dest: str
    nodelist: tuple[str, ...]
    delnodelist: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HaAck:
    origin: HaOrigin
    dest: str
    ackseq: int


@dataclass(frozen=True, slots=True)
class HaRexmit:
    origin: HaOrigin
    dest: str
    firstseq: int
    lastseq: int


@dataclass(frozen=True, slots=True)
class HaNakRexmit:
    origin: HaOrigin
    dest: str | None
    seq: int
    reason: str | None


def _typed(msg: HaMessage, t: str) -> tuple[HaOrigin, str] | None:
    origin, dest = parse_origin(msg), msg.get("dest")
    if msg.get("t") != t or origin is None or dest is None:
        return None
    return origin, dest


def parse_reqnodes(msg: HaMessage) -> HaReqNodes | None:
    got = _typed(msg, "reqnodes")
    return HaReqNodes(*got) if got is not None and got[0].seq is not None else None


def parse_repnodes(msg: HaMessage) -> HaRepNodes | None:
    got = _typed(msg, "repnodes")
    if got is None or got[0].seq is None:
        return None
    nodes, dels = msg.get("nodelist"), msg.get("delnodelist")
    return HaRepNodes(*got, tuple((nodes or "").split()), tuple((dels or "").split()))


def parse_ack(msg: HaMessage) -> HaAck | None:
    got = _typed(msg, "NS_ackmsg")
    ackseq = msg.get_hex("ackseq")
    return HaAck(*got, ackseq) if got is not None and ackseq is not None else None


def parse_decimal(text: str | None) -> int | None:
    """A field holding a decimal number (`%d`, `%lu`): ASCII digits only, at most 20 of
    them, else None (str.isdigit also takes '²' and Arabic-Indic digits, and int() refuses
    more than 4300 digits: a signed message must never raise)."""
    if text is None or not 0 < len(text) <= 20 or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def parse_rexmit(msg: HaMessage) -> HaRexmit | None:
    got = _typed(msg, "NS_rexmit")
    lo, hi = parse_decimal(msg.get("firstseq")), parse_decimal(msg.get("lastseq"))
    if got is None or lo is None or hi is None:
        return None
    return HaRexmit(*got, lo, hi) if 0 < lo <= hi else None


def parse_nak_rexmit(msg: HaMessage) -> HaNakRexmit | None:
    origin, seq = parse_origin(msg), msg.get_hex("firstseq")
    if msg.get("t") != "NS_nak_rexmit" or origin is None or seq is None or seq <= 0:
        return None
    return HaNakRexmit(origin, msg.get("dest"), seq, msg.get("info"))
