"""Where gathered records go: encrypted JSON Lines, sealed into the run's result
when they are few, else in files under MEDIA_ROOT/runs/<run token>/ (see
RecordSink). Values of the categories the request's jurisdiction holds back
(rules/, JurisdictionRules.withheld: passed in as data) are replaced before
anything is written, so they never reach our disk, our database or a package;
each collection records which columns were held back and why (`withheld`)."""

import concurrent.futures
import contextlib
import hashlib
import io
import json
import shutil
import time
from pathlib import Path

from django.conf import settings

from requests_app import zipfiles
from requests_app.files import (EncryptedWriter, iter_decrypted, open_text_reader,
                                 open_text_writer, seal, unseal)
from requests_app.rules import UNKNOWN, Withholding, withheld_under, withholding_for
from requests_app.sources.categories import WITHHELD


def run_dir(run) -> Path:
    """A run's own folder, named by its unguessable token: never reused, even if a
    database is restored or recreated while old files remain."""
    return Path(settings.MEDIA_ROOT) / "runs" / run.token


class RecordSink:
    """Writes one attempt's records into a folder of its own (runs/<token>/a<n>/), so
    two attempts at the same run never touch each other's files.

    Most collections of a subject are small (a customer row, a few orders): they
    are kept in memory as JSON lines. At close, when all of them together hold at
    most INLINE bytes (a typical subject: a few KiB), each is sealed (encrypted,
    files.seal) into its own info (`sealed`), which the run's result keeps: they
    become durable with the run's outcome, in the same database commit, instead
    of costing a file and its fsync (a few ms on a virtio disk, more than the
    whole gathering). Otherwise they are written one after another into one
    shared file (records.jsonl.enc; each collection's byte range in its info,
    `offset` and `length`): one file and one fsync rather than one per table. A
    collection that grows past SPILL bytes, or the largest one when all together
    pass HELD, gets a file of its own and is streamed to it from then on: memory
    stays bounded whatever the subject.

    `withheld`: what the request's jurisdiction holds back (rules.withheld_under);
    by default the strictest list, that of a request of no known jurisdiction."""

    INLINE = 32 * 1024  # bytes of all collections sealed into the run's result at most
    SPILL = 256 * 1024  # bytes of one collection kept in memory at most
    HELD = 2 * 1024 * 1024  # bytes of all collections kept in memory at most

    def __init__(self, run, attempt: int, on_progress=None,
                 withheld: tuple[Withholding, ...] | None = None):
        self.withheld = withheld_under(UNKNOWN) if withheld is None else withheld
        self._codes: dict[str, str | None] = {}
        self.prefix = f"a{attempt}"
        self.dir = run_dir(run) / self.prefix
        shutil.rmtree(self.dir, ignore_errors=True)
        self._on_progress = on_progress
        self._count = 0
        self._writers = {}  # collections streamed to a file of their own
        self._open = []  # the open_text_writer contexts of _writers, to publish or abort
        self._held: dict[str, list[str]] = {}  # collections kept in memory: their lines
        self._sizes: dict[str, int] = {}
        self._held_size = 0
        self._held_back: dict[str, set] = {}  # columns the jurisdiction holds back
        self.collections: dict[str, dict] = {}

    def write(self, collection: str, record: dict, categories: dict[str, str]) -> None:
        info = self.collections.get(collection)
        if info is None:
            info = self.collections[collection] = {"count": 0, "columns": dict(categories)}
            self._held[collection], self._sizes[collection] = [], 0
            self._held_back[collection] = {key for key, category in categories.items()
                                           if self.withholds(category)}
            self._note_withheld(collection, categories)
        withheld = self._held_back[collection]
        clean = {key: WITHHELD if key in withheld else value
                 for key, value in record.items()} if withheld else record
        line = json.dumps(clean, default=str, ensure_ascii=False) + "\n"
        if collection in self._writers:
            self._writers[collection].write(line)
        else:
            self._held[collection].append(line)
            self._sizes[collection] += len(line)  # characters: bytes at least this many
            self._held_size += len(line)
            if self._sizes[collection] > self.SPILL:
                self._spill(collection)
            elif self._held_size > self.HELD:
                self._spill(max(self._held, key=self._sizes.__getitem__))
        info["count"] += 1
        self._count += 1
        if self._on_progress and self._count % 1000 == 0:
            self._on_progress()  # a heartbeat: this attempt is alive

    def _spill(self, collection: str) -> None:
        """Give a collection kept in memory a file of its own, from now on."""
        filename = f"{len(self._open):03d}.jsonl.enc"
        context = open_text_writer(self.dir / filename)
        writer = self._writers[collection] = context.__enter__()
        self._open.append(context)
        self.collections[collection]["file"] = f"{self.prefix}/{filename}"
        writer.write("".join(self._held.pop(collection)))
        self._held_size -= self._sizes.pop(collection)

    def withholds(self, category: str) -> str | None:
        """The code of the Withholding that holds this category back (None:
        disclosed); a gatherer that selects a constant in place of a column
        (sql/gathering.py) asks this."""
        if category not in self._codes:
            rule = withholding_for(self.withheld, category)
            self._codes[category] = rule.code if rule else None
        return self._codes[category]

    def _note_withheld(self, collection: str, categories: dict[str, str]) -> None:
        """{column: Withholding code} of the columns held back, on the collection."""
        held = {c: code for c, cat in categories.items() if (code := self.withholds(cat))}
        if held:
            self.collections[collection]["withheld"] = held

    def write_copy(self, collection: str, categories: dict[str, str], json_lines, csv) -> int:
        """A whole collection as bytes formatted by the database: `json_lines` (one
        JSON object per line) and `csv` (header first) are each called with a
        `write(bytes)` function and call it with the bytes as they come, the
        values held back (self.withholds) already replaced at the source. Each is kept as a package
        member ready to be zipped: the JSON lines as one JSON array (a comma added
        before each newline but the last, as packages._json_array lays it out), the
        CSV as it is, each deflated as it comes (raw deflate, level 1) and then
        encrypted; its CRC-32, sizes and SHA-256 are recorded, so packages.build
        copies the compressed bytes into the zip without inflating them. Returns
        the number of records."""
        if collection in self.collections:
            raise ValueError(f"{collection}: written record by record already")
        info = self.collections[collection] = {
            "columns": dict(categories), "count": 0, "format": "copy", "deflated": {}}
        self._note_withheld(collection, categories)
        number = len(self.collections)

        def member(key, suffix, pump, on_progress):
            filename = f"{number:03d}-{key}.{suffix}.z.enc"
            with EncryptedWriter(self.dir / filename) as out:
                deflated = _Member(out)
                blocks = _Blocks(deflated, on_progress, as_array=key == "file")
                pump(blocks.write)
                blocks.close()
                summary = deflated.summary()
            return f"{self.prefix}/{filename}", summary, blocks.lines

        # Both at once: the database formats one while we deflate and encrypt the
        # other (ISA-L deflate, hashlib and the socket reads release the GIL). The heartbeat
        # (a database write) stays in this thread.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            csv_done = pool.submit(member, "csv", "csv", csv, None)
            try:
                info["file"], info["deflated"]["file"], info["count"] = member(
                    "file", "json", json_lines, self._on_progress)
            finally:
                error = csv_done.exception()  # waits for it either way
            if error is not None:
                raise error
            info["csv"], info["deflated"]["csv"], _ = csv_done.result()
        self._count += info["count"]
        return info["count"]

    def close(self) -> dict[str, dict]:
        """Write the collections kept in memory into the shared file, and publish
        every file. Each is fsynced before its rename (files.EncryptedWriter.close);
        several at once, each in a thread (fsync releases the GIL), so that the file
        system commits them together rather than one journal commit after another.
        An error from any is raised once all have finished; a file that failed
        published nothing."""
        if any(self._held.values()):
            if self._held_size <= self.INLINE:
                self._seal_held()
            else:
                self._write_held()
        contexts, self._open, self._writers = self._open, [], {}
        if len(contexts) < 2:
            for context in contexts:
                context.__exit__(None, None, None)
            return self.collections
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(contexts))) as pool:
            futures = [pool.submit(context.__exit__, None, None, None) for context in contexts]
        errors = [f.exception() for f in futures if f.exception() is not None]
        if errors:
            raise errors[0]
        return self.collections

    def _seal_held(self) -> None:
        """The collections kept in memory, each sealed into its info (`sealed`)."""
        for collection, lines in self._held.items():
            if lines:
                self.collections[collection]["sealed"] = seal("".join(lines).encode("utf-8"))
        self._held, self._sizes, self._held_size = {}, {}, 0

    def _write_held(self) -> None:
        """The collections kept in memory, one after another in records.jsonl.enc,
        each with its byte range (`offset`, `length`) in its info."""
        name = f"{self.prefix}/records.jsonl.enc"
        context = open_text_writer(self.dir / "records.jsonl.enc")
        shared = context.__enter__()
        self._open.append(context)
        offset = 0
        for collection, lines in self._held.items():
            if not lines:  # streamed to a file of its own (or none written)
                continue
            data = "".join(lines).encode("utf-8")
            shared.buffer.write(data)
            self.collections[collection].update(file=name, offset=offset, length=len(data))
            offset += len(data)
        self._held, self._sizes, self._held_size = {}, {}, 0

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            contexts, self._open, self._writers = self._open, [], {}
            for context in reversed(contexts):  # unpublished files are discarded
                with contextlib.suppress(Exception):
                    context.__exit__(exc_type, exc, tb)
            shutil.rmtree(self.dir, ignore_errors=True)


class _Member:
    """Plaintext in, raw deflate (level 1) out to an EncryptedWriter; keeps the
    CRC-32, the sizes and the SHA-256 of the plaintext."""

    def __init__(self, out):
        self.out, self.deflate = out, zipfiles.compressor()
        self.crc, self.size, self.compressed, self.hash = 0, 0, 0, hashlib.sha256()

    def write(self, data) -> None:
        self.crc, self.size = zipfiles.crc32(data, self.crc), self.size + len(data)
        self.hash.update(data)
        self._out(self.deflate.compress(data))

    def _out(self, data) -> None:
        if data:
            self.out.write(data)
            self.compressed += len(data)

    def summary(self) -> dict:
        self._out(self.deflate.flush())
        return {"crc32": self.crc, "bytes": self.size, "compressed": self.compressed,
                "sha256": self.hash.hexdigest()}


class _Blocks:
    """Writes gathered into blocks of at least 256 KiB (sql.driver._copy_out passes
    blocks of whole rows that size: they go on as they are); with `as_array`, JSON
    lines become a JSON array ("[", a comma after each line but the last, "]"),
    counted in `lines`; a heartbeat at most once a second. One pass over the bytes
    (the comma's replace), no other copy: it runs for every byte of a copied leaf."""

    SIZE = 1 << 18

    def __init__(self, out, on_progress, as_array=False):
        self.out, self.on_progress, self.as_array = out, on_progress, as_array
        self.buffer, self.lines, self.beat = bytearray(), 0, time.monotonic()
        self.separator = b""  # before a block of lines: the comma the previous one lacks
        if as_array:
            self.out.write(b"[\n")

    def write(self, data) -> None:
        if self.buffer or len(data) < self.SIZE:
            self.buffer += data
            if len(self.buffer) < self.SIZE:
                return
            data = bytes(self.buffer)
            self.buffer.clear()
        self._block(data)

    def _block(self, data: bytes) -> None:
        if self.as_array:
            end = data.rfind(b"\n") + 1
            if end < len(data):  # a line goes on in the next write
                self.buffer += data[end:]
                data = data[:end]
            if data:
                lines = data.replace(b"\n", b",\n")
                self.lines += len(lines) - len(data)
                if self.separator:
                    self.out.write(self.separator)
                self.out.write(memoryview(lines)[:-2])  # its last comma waits
                self.separator = b",\n"
        else:
            self.out.write(data)
        if self.on_progress and time.monotonic() - self.beat >= 1:
            self.on_progress()  # a heartbeat: this attempt is alive
            self.beat = time.monotonic()

    def close(self) -> None:
        if self.buffer:
            data = bytes(self.buffer)
            self.buffer.clear()
            if self.as_array and not data.endswith(b"\n"):
                data += b"\n"
            self._block(data)
        if self.as_array:
            self.out.write(b"\n]\n" if self.lines else b"]\n")


def iter_member(run, collection_info: dict, key: str):
    """The plaintext of a member written by RecordSink.write_copy (key "file": the
    JSON array, "csv": the CSV), inflated block by block."""
    inflate = zipfiles.decompressor()
    for chunk in iter_decrypted(run_dir(run) / collection_info[key]):
        if data := inflate.decompress(chunk):
            yield data
    if data := inflate.flush():
        yield data


def read_records(run, collection_info: dict):
    """Yield the records of one collection written by a RecordSink."""
    if collection_info.get("deflated"):  # a JSON array, one record per line
        lines = io.TextIOWrapper(io.BufferedReader(_IterReader(
            iter_member(run, collection_info, "file"))), encoding="utf-8", newline="\n")
        for line in lines:
            line = line.rstrip("\n").removesuffix(",")
            if line not in ("[", "]"):
                yield json.loads(line)
        return
    if "sealed" in collection_info:  # sealed into the run's result (RecordSink)
        for line in unseal(collection_info["sealed"]).split(b"\n"):
            if line:
                yield json.loads(line)
        return
    if "offset" in collection_info:  # one collection of the shared file (RecordSink)
        data = _byte_range(iter_decrypted(run_dir(run) / collection_info["file"]),
                           collection_info["offset"], collection_info["length"])
        for line in data.split(b"\n"):
            if line:
                yield json.loads(line)
        return
    with open_text_reader(run_dir(run) / collection_info["file"]) as lines:
        for line in lines:
            yield json.loads(line)


def _byte_range(chunks, offset: int, length: int) -> bytes:
    """Bytes offset .. offset + length of a stream of chunks (at most RecordSink.HELD
    of them: a collection kept in memory while gathered)."""
    taken, position = [], 0
    for chunk in chunks:
        end = position + len(chunk)
        if end > offset:
            taken.append(chunk[max(0, offset - position):offset + length - position])
        position = end
        if position >= offset + length:
            break
    return b"".join(taken)


class _IterReader(io.RawIOBase):
    """A readable binary stream over an iterator of bytes."""

    def __init__(self, chunks):
        super().__init__()
        self.chunks, self.pending = iter(chunks), b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self.pending:
            self.pending = next(self.chunks, None)
            if self.pending is None:
                self.pending = b""
                return 0
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n
