"""hbctl cable-test over socat pty pairs: the same bytes a null-modem cable carries.

A "loopback plug" is a pty whose other end socat hands to `cat` (TX wired back to RX); a
"cable" is a socat pty pair with the peer role running in a second process; a "noisy plug"
is a loopback through a small filter that flips one bit at a chosen byte offset.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hbd.commands.cabletest import (
    HEADER,
    PROBE,
    Corrupt,
    Frame,
    FrameReader,
    add_parser,
    configured_baud,
    encode_frame,
    main,
    pattern,
    run,
)

from netns import start_socat, stop_process

SIZE = 64
FRAME_BYTES = HEADER.size + SIZE + 4  # header, payload, CRC-32

FLIPPER = """
import os, sys
offset = int(sys.argv[1])
seen = 0
while True:
    data = bytearray(os.read(0, 4096))
    if not data:
        break
    if seen <= offset < seen + len(data):
        data[offset - seen] ^= 0x01
    seen += len(data)
    os.write(1, data)
"""


@pytest.fixture
def noisy_plug(tmp_path: Path) -> Iterator[str]:
    """A loopback plug that flips bit 0 inside the payload of the fourth frame (seq 3)."""
    flipper = tmp_path / "flip.py"
    flipper.write_text(FLIPPER)
    offset = 3 * FRAME_BYTES + HEADER.size + 10
    port = tmp_path / "ttyNOISY"
    proc = start_socat(
        f"pty,raw,echo=0,link={port}",
        f"EXEC:{sys.executable} -u {flipper} {offset}",
        links=[port],
    )
    try:
        yield str(port)
    finally:
        stop_process(proc)


def report_of(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    result: dict[str, object] = json.loads(capsys.readouterr().out)
    return result


def test_a_loopback_plug_passes_every_pattern(
    loopback_plug: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main([loopback_plug, "--loopback", "--count", "60", "--json"])
    report = report_of(capsys)
    assert status == 0
    assert (report["mode"], report["sent"], report["ok"]) == ("loopback", 60, 60)
    assert (report["corrupt"], report["lost"], report["clean"]) == (0, 0, True)
    assert report["bytes_each_way"] == 60 * FRAME_BYTES
    rtt = report["rtt_ms"]
    assert isinstance(rtt, dict)
    assert 0 < rtt["min"] <= rtt["median"] <= rtt["max"] < 1000
    assert isinstance(report["throughput_Bps"], float) and report["throughput_Bps"] > 0


def test_a_flipped_bit_on_the_line_is_counted_as_one_corrupt_frame(
    noisy_plug: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main([noisy_plug, "--loopback", "--count", "10", "--json"])
    report = report_of(capsys)
    assert status == 1
    assert (report["sent"], report["ok"], report["corrupt"], report["lost"]) == (10, 9, 1, 0)
    assert report["errors"] == ["frame 3: CRC mismatch"]
    assert report["clean"] is False


def test_two_hosts_test_the_cable_with_one_side_echoing(
    cable: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    here, there = cable
    peer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hbd.commands.cabletest",
            there,
            "--peer",
            "--json",
            "--timeout",
            "10",
            "--config-dir",
            "/nonexistent",  # no ha.cf: 19200, Heartbeat's default
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert peer.stderr is not None
        assert "waiting for a sender" in peer.stderr.readline()  # the port is open
        status = main([here, "--count", "40", "--size", "200", "--json"])
        peer_out, peer_err = peer.communicate(timeout=15)
    finally:
        if peer.poll() is None:
            peer.kill()
            peer.communicate()
    report = report_of(capsys)
    assert status == 0
    assert (report["mode"], report["ok"], report["corrupt"], report["lost"]) == (
        "sender",
        40,
        0,
        0,
    )
    assert peer.returncode == 0, peer_err
    assert json.loads(peer_out) == {
        "port": there,
        "baud": 19200,
        "mode": "peer",
        "echoed": 40,
        "corrupt": 0,
        "noise_bytes": 0,
        "finished": True,
    }


def test_a_sender_without_a_peer_reports_every_frame_lost(
    cable: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    here, _nobody_there = cable
    status = main([here, "--count", "3", "--timeout", "0.2"])
    out = capsys.readouterr().out
    assert status == 1
    assert "3 sent, 0 ok, 0 corrupt, 3 lost" in out
    assert "frame 0: nothing came back within 0.2 s" in out
    assert out.rstrip().endswith("result:     FAIL")


def test_a_port_that_cannot_be_opened_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "ttyUSB9"
    assert main([str(missing), "--loopback", "--config-dir", str(tmp_path)]) == 2
    assert f"cannot open {missing} at 19200 baud" in capsys.readouterr().err


def test_the_default_baud_is_the_one_ha_cf_gives_that_line_else_heartbeats_19200(
    tmp_path: Path,
) -> None:
    """Regression: hardware/'s recipe ran `cable-test --peer` at the old default 115200
    against 19200 on the other end. The default is ha.cf's, for that very line."""
    assert configured_baud(str(tmp_path), "/dev/ttyS0") == 19200  # no ha.cf
    (tmp_path / "ha.cf").write_text("baud 38400\nserial /dev/ttyS0\nbcast eth0\nnode alpha beta\n")
    assert configured_baud(str(tmp_path), "/dev/ttyS0") == 38400
    assert configured_baud(str(tmp_path), "/dev/ttyUSB0") == 38400  # its first serial line
    (tmp_path / "ha.cf").write_text("baud fast\n")  # a bad ha.cf: not the cable test's to judge
    assert configured_baud(str(tmp_path), "/dev/ttyS0") == 19200


def test_nonsense_arguments_are_refused_with_the_reason(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["/dev/ttyS0", "--count", "0"])
    assert exc.value.code == 2
    assert "'0' must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["/dev/ttyS0", "--peer", "--loopback"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_hbctl_wires_it_in_with_add_parser_and_run(loopback_plug: str) -> None:
    hbctl = argparse.ArgumentParser(prog="hbctl")
    add_parser(hbctl.add_subparsers(dest="command", required=True))
    args = hbctl.parse_args(["cable-test", loopback_plug, "--loopback", "--count", "5"])
    assert args.func is run
    assert args.func(args) == 0


# --------------------------------------------------------------------------- framing


def test_frames_are_found_after_line_noise_and_when_fed_a_byte_at_a_time() -> None:
    frames = [encode_frame(PROBE, seq, pattern(seq, 32)) for seq in range(6)]
    stream = b"\x00\xa5garbage" + b"".join(frames)
    reader = FrameReader()
    got = [item for i in range(len(stream)) for item in reader.feed(stream[i : i + 1])]
    assert got == [Frame(PROBE, seq, pattern(seq, 32)) for seq in range(6)]
    assert reader.noise_bytes == len(b"\x00\xa5garbage")


def test_a_damaged_frame_is_reported_with_its_sequence_and_the_next_one_still_read() -> None:
    damaged = bytearray(encode_frame(PROBE, 7, pattern(7, 16)))
    damaged[HEADER.size + 3] ^= 0x80
    reader = FrameReader()
    got = reader.feed(bytes(damaged) + encode_frame(PROBE, 8, pattern(8, 16)))
    assert got == [Corrupt("CRC mismatch", 7), Frame(PROBE, 8, pattern(8, 16))]


def test_every_pattern_is_exercised_and_reproducible() -> None:
    payloads = {pattern(seq, 8) for seq in range(6)}
    assert len(payloads) == 6  # six distinct patterns
    assert pattern(5, 64) == pattern(5, 64)  # the receiver can regenerate it
    assert b"\x55" * 8 in payloads and b"\xff" * 8 in payloads


@given(st.binary(max_size=512))
def test_any_bytes_on_the_line_give_frames_or_corrupt_reports_never_an_exception(
    noise: bytes,
) -> None:
    reader = FrameReader()
    items = reader.feed(noise) + reader.feed(encode_frame(PROBE, 1, b"ok"))
    assert all(isinstance(item, Frame | Corrupt) for item in items)
