"""Encrypted files at rest (requests_app/files.py): round trips, tampering of every
kind, atomic writes and bounded memory. No database needed."""

import base64
import hashlib
import io
import json
import os
import stat
import tracemalloc

import pytest

from requests_app.files import (
    CHUNK_SIZE,
    DecryptionError,
    EncryptedReader,
    EncryptedWriter,
    iter_decrypted,
    open_text_reader,
    open_text_writer,
)

HEADER_SIZE = 6 + 8


@pytest.fixture
def key():
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def write(path, data: bytes, key, piece=10_000) -> EncryptedWriter:
    with EncryptedWriter(path, key) as writer:
        for start in range(0, len(data), piece):
            writer.write(data[start:start + piece])
    return writer


def read(path, key) -> bytes:
    with io.BufferedReader(EncryptedReader(path, key)) as reader:
        return reader.read()


def split(path) -> tuple[bytes, list[bytes]]:
    """The header and the framed chunks (length + ciphertext + tag) of a file."""
    raw = path.read_bytes()
    header, rest, chunks = raw[:HEADER_SIZE], raw[HEADER_SIZE:], []
    while rest:
        end = 4 + int.from_bytes(rest[:4], "big")
        chunks.append(rest[:end])
        rest = rest[end:]
    return header, chunks


@pytest.mark.parametrize(
    "size", [0, 1, CHUNK_SIZE, CHUNK_SIZE + 1, 5_000_000],
    ids=["empty", "1-byte", "exactly-64KiB", "64KiB-plus-1", "5MB"],
)
def test_bytes_come_back_as_they_were_written(tmp_path, key, size):
    data = os.urandom(size)
    path = tmp_path / "package.bin"
    write(path, data, key)
    assert read(path, key) == data
    assert b"".join(iter_decrypted(path, key)) == data


def test_chunks_hold_at_most_64_KiB_and_the_last_may_be_empty(tmp_path, key):
    path = tmp_path / "f.bin"
    write(path, os.urandom(2 * CHUNK_SIZE), key)
    assert [len(c) - 4 - 16 for c in split(path)[1]] == [CHUNK_SIZE, CHUNK_SIZE]
    write(path, b"", key)
    assert [len(c) - 4 - 16 for c in split(path)[1]] == [0]
    assert [len(c) for c in iter_decrypted(path, key)] == []


def test_jsonl_lines_come_back_one_by_one(tmp_path, key):
    records = [{"id": i, "name": f"Zoë {i}", "note": "line\nbreak ✓" * (i % 7)} for i in range(20_000)]
    path = tmp_path / "records.jsonl"
    with open_text_writer(path, key) as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    with open_text_reader(path, key) as lines:
        assert [json.loads(line) for line in lines] == records
    assert out.buffer.sha256 == hashlib.sha256(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
    ).hexdigest()


def test_the_key_defaults_to_the_settings_key(tmp_path, settings, key):
    path = tmp_path / "upload.bin"
    with EncryptedWriter(path) as writer:
        writer.write(b"from the settings key")
    assert read(path, settings.FILE_ENCRYPTION_KEY) == b"from the settings key"
    assert b"".join(iter_decrypted(path)) == b"from the settings key"
    with pytest.raises(DecryptionError):
        read(path, key)


def test_a_wrong_key_is_refused(tmp_path, key):
    path = tmp_path / "f.bin"
    write(path, b"secret", key)
    other = base64.urlsafe_b64encode(os.urandom(32)).decode()
    with pytest.raises(DecryptionError, match="authentication failed"):
        read(path, other)


@pytest.mark.parametrize(
    "offset", [0, 7, HEADER_SIZE, HEADER_SIZE + 3, HEADER_SIZE + 4, HEADER_SIZE + 50, -1],
    ids=["magic", "nonce-prefix", "length-high-byte", "length-low-byte", "ciphertext-start",
         "ciphertext-middle", "tag"],
)
def test_a_flipped_byte_anywhere_is_detected(tmp_path, key, offset):
    path = tmp_path / "f.bin"
    write(path, os.urandom(1000), key)
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(raw)
    with pytest.raises(DecryptionError):
        read(path, key)


def test_a_file_without_its_last_chunk_is_detected_as_truncated(tmp_path, key):
    path = tmp_path / "f.bin"
    write(path, os.urandom(3 * CHUNK_SIZE), key)
    header, chunks = split(path)
    path.write_bytes(header + b"".join(chunks[:-1]))
    with pytest.raises(DecryptionError, match="truncated"):
        read(path, key)


def test_a_file_cut_in_the_middle_of_a_chunk_is_detected(tmp_path, key):
    path = tmp_path / "f.bin"
    write(path, os.urandom(CHUNK_SIZE + 10), key)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DecryptionError, match="truncated"):
        read(path, key)


def test_a_header_alone_is_truncated(tmp_path, key):
    path = tmp_path / "f.bin"
    write(path, b"", key)
    path.write_bytes(split(path)[0])
    with pytest.raises(DecryptionError, match="truncated"):
        read(path, key)


def test_data_after_the_final_chunk_is_detected(tmp_path, key):
    path = tmp_path / "f.bin"
    write(path, b"abc", key)
    header, chunks = split(path)
    path.write_bytes(header + chunks[0] + chunks[0])
    with pytest.raises(DecryptionError, match="after the final chunk"):
        read(path, key)


def test_swapped_chunks_are_detected(tmp_path, key):
    path = tmp_path / "f.bin"
    write(path, os.urandom(3 * CHUNK_SIZE), key)
    header, (first, second, third) = split(path)
    path.write_bytes(header + second + first + third)
    with pytest.raises(DecryptionError, match="chunk 0"):
        read(path, key)


def test_a_chunk_from_another_file_with_the_same_key_is_detected(tmp_path, key):
    one, two = tmp_path / "one.bin", tmp_path / "two.bin"
    write(one, os.urandom(2 * CHUNK_SIZE), key)
    write(two, os.urandom(2 * CHUNK_SIZE), key)
    header, (first, _) = split(one)
    path = tmp_path / "mixed.bin"
    path.write_bytes(header + first + split(two)[1][1])
    with pytest.raises(DecryptionError, match="chunk 1"):
        read(path, key)


def test_no_bytes_of_a_tampered_chunk_are_returned(tmp_path, key):
    path = tmp_path / "f.bin"
    write(path, b"x" * 100, key)
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x01
    path.write_bytes(raw)
    reader = EncryptedReader(path, key)
    buffer = bytearray(10)
    with pytest.raises(DecryptionError):
        reader.readinto(buffer)
    assert buffer == bytearray(10)
    reader.close()


def test_the_file_on_disk_does_not_contain_the_plaintext(tmp_path, key):
    path = tmp_path / "records.jsonl"
    with open_text_writer(path, key) as out:
        for i in range(1000):
            out.write(json.dumps({"email": "pat.doe@example.com", "ssn": "078-05-1120"}) + "\n")
    on_disk = path.read_bytes()
    assert on_disk.startswith(b"PPENC1")
    assert b"pat.doe" not in on_disk and b"078-05" not in on_disk and b"email" not in on_disk


def test_the_file_is_readable_by_its_owner_only_in_a_created_directory(tmp_path, key):
    path = tmp_path / "new" / "deeper" / "f.bin"
    write(path, b"abc", key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(path.parent) == ["f.bin"]


def test_a_failed_write_leaves_no_file_and_no_temporary_file(tmp_path, key):
    path = tmp_path / "package.bin"
    with pytest.raises(RuntimeError, match="source went away"):
        with EncryptedWriter(path, key) as writer:
            writer.write(os.urandom(3 * CHUNK_SIZE))
            raise RuntimeError("source went away")
    assert os.listdir(tmp_path) == []
    with pytest.raises(RuntimeError):
        with open_text_writer(path, key) as out:
            out.write("half a line")
            raise RuntimeError
    assert os.listdir(tmp_path) == []


def test_a_failed_rewrite_leaves_the_previous_file_untouched(tmp_path, key):
    path = tmp_path / "package.bin"
    write(path, b"version 1", key)
    with pytest.raises(RuntimeError):
        with EncryptedWriter(path, key) as writer:
            writer.write(b"version 2")
            raise RuntimeError
    assert read(path, key) == b"version 1"
    assert os.listdir(tmp_path) == ["package.bin"]


def test_a_writer_dropped_without_close_publishes_nothing(tmp_path, key):
    writer = EncryptedWriter(tmp_path / "f.bin", key)
    writer.write(b"abc")
    del writer
    assert os.listdir(tmp_path) == []


def test_size_and_sha256_of_the_plaintext_are_known_after_close(tmp_path, key):
    data = os.urandom(CHUNK_SIZE * 2 + 123)
    writer = write(tmp_path / "f.bin", data, key, piece=777)
    assert writer.plaintext_size == len(data)
    assert writer.sha256 == hashlib.sha256(data).hexdigest()


def test_writing_50_MB_keeps_memory_bounded(tmp_path, key):
    path = tmp_path / "big.bin"
    piece, count = 100_003, 500  # pieces that do not line up with chunks
    digest = hashlib.sha256()
    tracemalloc.start()
    try:
        with EncryptedWriter(path, key) as writer:
            for _ in range(count):
                data = os.urandom(piece)
                digest.update(data)
                writer.write(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert writer.plaintext_size == piece * count > 50_000_000
    assert peak < 5_000_000, f"peak {peak} bytes"
    check = hashlib.sha256()
    for chunk in iter_decrypted(path, key):
        assert len(chunk) <= CHUNK_SIZE
        check.update(chunk)
    assert check.hexdigest() == digest.hexdigest() == writer.sha256


def test_zip_writer_mixes_members_deflated_beforehand_with_streamed_ones(tmp_path):
    import datetime
    import zipfile
    import zlib

    from requests_app.zipfiles import Deflated, compressor, stream_zip

    plain = os.urandom(70_000) + "zoë,\"q\"\n".encode() * 50_000
    deflate = compressor()
    compressed = deflate.compress(plain) + deflate.flush()
    empty = compressor().flush()
    members = [
        ("dir/ünï.json", Deflated([compressed[:777], compressed[777:]], zlib.crc32(plain),
                                  len(plain), len(compressed))),
        ("streamed.csv", iter([b"a,b\n", b"1,2\n" * 100_000])),
        ("nothing", iter([])),
        ("empty.json", Deflated([empty], zlib.crc32(b""), 0, len(empty))),
    ]
    path = tmp_path / "t.zip"
    path.write_bytes(b"".join(stream_zip(
        members, datetime.datetime(2026, 11, 29, 20, 1, 3, tzinfo=datetime.timezone.utc))))
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == ["dir/ünï.json", "streamed.csv", "nothing", "empty.json"]
        assert archive.read("dir/ünï.json") == plain
        assert archive.read("streamed.csv") == b"a,b\n" + b"1,2\n" * 100_000
        assert archive.read("nothing") == b"" and archive.read("empty.json") == b""
        info = archive.getinfo("streamed.csv")
        assert info.date_time == (2026, 11, 29, 20, 1, 2) and info.external_attr >> 16 == 0o100600
    wrong = [("x", Deflated([compressed], zlib.crc32(plain), len(plain), len(compressed) + 1))]
    with pytest.raises(ValueError):
        b"".join(stream_zip(wrong, datetime.datetime.now(datetime.timezone.utc)))


def test_sealed_data_comes_back_only_with_its_key_and_unaltered(key):
    from requests_app.files import seal, unseal

    text = seal(b'{"email": "pat@example.com"}\n', key)
    assert "pat@example.com" not in text
    assert unseal(text, key) == b'{"email": "pat@example.com"}\n'
    assert seal(b"same", key) != seal(b"same", key)  # a fresh nonce each time
    tampered = text[:-4] + ("AAAA" if text[-4:] != "AAAA" else "BBBB")
    with pytest.raises(DecryptionError):
        unseal(tampered, key)
    other = base64.urlsafe_b64encode(b"k" * 32).decode()
    with pytest.raises(DecryptionError):
        unseal(text, other)


def test_a_record_sink_seals_few_records_shares_one_file_for_more_and_spills_big_ones(
        settings, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from requests_app.sources.records import RecordSink, read_records, run_dir

    settings.MEDIA_ROOT = str(tmp_path)
    rows = {"customers": [{"id": 1, "email": "pat@example.com", "note": "é \u2028 x"}],
            "orders": [{"id": i, "total": i * 10} for i in range(40)],
            "events": [{"url": f"/page/{i}"} for i in range(400)]}

    def sink_of(token):
        run = SimpleNamespace(token=token)
        with RecordSink(run, 1) as sink:
            for name, records in rows.items():
                for record in records:
                    sink.write(name, record, {"id": "user.unique_id"})
        return run, sink.collections

    run, few = sink_of("few")  # a few KiB: sealed into the result, no file at all
    assert all("sealed" in info for info in few.values())
    assert not run_dir(run).exists() or not any(run_dir(run).rglob("*.enc"))
    assert {n: list(read_records(run, info)) for n, info in few.items()} == rows

    monkeypatch.setattr(RecordSink, "INLINE", 1024)  # more: one shared file
    monkeypatch.setattr(RecordSink, "SPILL", 4096)  # events pass it: a file of their own
    run, more = sink_of("more")
    assert more["customers"]["file"] == more["orders"]["file"] == "a1/records.jsonl.enc"
    assert more["events"]["file"] != more["orders"]["file"] and "offset" not in more["events"]
    assert {n: list(read_records(run, info)) for n, info in more.items()} == rows
    assert [info["count"] for info in more.values()] == [1, 40, 400]
