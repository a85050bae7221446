"""TensorBoard event files of scalars, written without TensorBoard or TensorFlow installed.

An event file is a sequence of TFRecords (``uint64`` length, masked CRC-32C of the length, the
bytes, masked CRC-32C of the bytes), each an ``Event`` protocol buffer: the first holds
``file_version = "brain.Event:2"``, every other one ``wall_time``, ``step`` and a ``Summary``
with one ``simple_value``. TensorBoard reads any file in the log directory whose name contains
``tfevents``. Only the fields written here are encoded, by hand.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path

_CASTAGNOLI = 0x82F63B78  # CRC-32C, reflected


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (_CASTAGNOLI if crc & 1 else 0)
        table.append(crc)
    return table


_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    """The TFRecord checksum: CRC-32C rotated right by 15 bits plus a constant, mod 2^32."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def record(data: bytes) -> bytes:
    """One TFRecord framing ``data``."""
    length = struct.pack("<Q", len(data))
    return (
        length + struct.pack("<I", masked_crc(length)) + data + struct.pack("<I", masked_crc(data))
    )


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def scalar_event(tag: str, value: float, step: int, wall_time: float) -> bytes:
    """An ``Event`` with one scalar ``Summary.Value`` (``simple_value``, float32)."""
    summary_value = _field(1, tag.encode()) + b"\x15" + struct.pack("<f", value)
    summary = _field(1, summary_value)
    return (
        b"\x09" + struct.pack("<d", wall_time) + b"\x10" + _varint(int(step)) + _field(5, summary)
    )


def version_event(wall_time: float) -> bytes:
    """The first ``Event`` of a file: its format version."""
    return b"\x09" + struct.pack("<d", wall_time) + _field(3, b"brain.Event:2")


class EventWriter:
    """Appends scalar events to a new event file in ``logdir`` (created if absent)."""

    def __init__(self, logdir: str | Path):
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        now = time.time()
        name = f"events.out.tfevents.{int(now)}.{socket.gethostname()}.{os.getpid()}.difftrade"
        self.path = self.logdir / name
        self._file = open(self.path, "ab")  # noqa: SIM115 - kept open across calls; close() closes it
        self._file.write(record(version_event(now)))

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        """One point of the curve ``tag``."""
        self._file.write(record(scalar_event(tag, float(value), step, time.time())))

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()
