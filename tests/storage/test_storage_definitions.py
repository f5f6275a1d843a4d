"""Definitions file: round trip, absent file, atomic replacement, corruption errors."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest

from storage import definitions_file
from storage.definitions_file import DefinitionsError

DOC = {
    "version": 1,
    "vhosts": [{"name": "/"}, {"name": "vh/ü"}],
    "users": [{"name": "guest", "password_hash": b"\x00\x01\xfe\xff", "tags": ["administrator"]}],
    "permissions": [{"user": "guest", "vhost": "/", "configure": ".*", "write": ".*",
                     "read": ".*"}],
    "exchanges": [{"vhost": "/", "name": "logs", "type": "topic", "durable": True,
                   "arguments": {"alternate-exchange": "ae"}}],
    "queues": [{"vhost": "/", "name": "q", "durable": True,
                "arguments": {"x-max-length": 10, "x-message-ttl": 1.5}}],
    "bindings": [], "policies": [],
}


def test_round_trip_and_absent(tmp_path: Path) -> None:
    path = tmp_path / "definitions.bin"
    assert definitions_file.load(path) == {}
    definitions_file.save(path, DOC)
    assert definitions_file.load(path) == DOC
    doc2 = dict(DOC, queues=[])
    definitions_file.save(path, doc2)
    assert definitions_file.load(path) == doc2
    assert sorted(os.listdir(tmp_path)) == ["definitions.bin"]


def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "definitions.bin"
    definitions_file.save(path, DOC)
    calls: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd) or real(fd))

    def crash(src: object, dst: object) -> None:
        raise OSError("power cut before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        definitions_file.save(path, {"queues": ["new"]})
    assert len(calls) == 1  # the temp file was fsynced before the rename
    assert definitions_file.load(path) == DOC  # the old document is intact
    assert not (tmp_path / "definitions.bin.tmp").exists()  # load cleans a leftover temp


def test_failing_write_leaves_old_document(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "definitions.bin"
    definitions_file.save(path, DOC)

    def full(fd: int, data: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSError):
        definitions_file.save(path, {"x": 1})
    monkeypatch.undo()
    assert definitions_file.load(path) == DOC
    assert sorted(os.listdir(tmp_path)) == ["definitions.bin"]


@pytest.mark.parametrize("damage", ["flip", "truncate", "magic", "empty"])
def test_corrupt_file_is_a_clear_error(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "definitions.bin"
    definitions_file.save(path, DOC)
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[-3] ^= 0x10
    elif damage == "truncate":
        data = data[:len(data) // 2]
    elif damage == "magic":
        data[0:4] = b"JUNK"
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    with pytest.raises(DefinitionsError, match="corrupt") as info:
        definitions_file.load(path)
    assert str(path) in str(info.value)


def test_newer_version_and_non_map(tmp_path: Path) -> None:
    path = tmp_path / "definitions.bin"
    data = bytearray(definitions_file.encode({}))
    data[4] = 9
    path.write_bytes(bytes(data))
    with pytest.raises(DefinitionsError, match="version 9"):
        definitions_file.load(path)
    with pytest.raises(DefinitionsError, match="not a map"):
        payload = b"\x93\x01\x02\x03"  # a msgpack array
        definitions_file.decode(definitions_file.MAGIC + bytes((definitions_file.VERSION, 0, 0, 0))
                           + zlib.crc32(payload).to_bytes(4, "little") + payload)
    with pytest.raises(TypeError):
        definitions_file.save(path, [1, 2])  # type: ignore[arg-type]
