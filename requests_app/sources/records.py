"""Where gathered records go: encrypted JSON Lines files, one per collection, under
MEDIA_ROOT/runs/<run id>/. Values of never-disclosed categories are replaced
before anything is written, so they never reach our disk or a package."""

import contextlib
import json
import shutil
import time
from pathlib import Path

from django.conf import settings

from requests_app.files import CHUNK_SIZE, EncryptedWriter, open_text_reader, open_text_writer
from requests_app.sources.categories import WITHHELD, never_disclosed


def run_dir(run) -> Path:
    """A run's own folder, named by its unguessable token: never reused, even if a
    database is restored or recreated while old files remain."""
    return Path(settings.MEDIA_ROOT) / "runs" / run.token


class RecordSink:
    """Writes one attempt's records into a folder of its own (runs/<token>/a<n>/), so
    two attempts at the same run never touch each other's files."""

    def __init__(self, run, attempt: int, on_progress=None):
        self.prefix = f"a{attempt}"
        self.dir = run_dir(run) / self.prefix
        shutil.rmtree(self.dir, ignore_errors=True)
        self._on_progress = on_progress
        self._count = 0
        self._writers = {}
        self._files = contextlib.ExitStack()
        self.collections: dict[str, dict] = {}

    def write(self, collection: str, record: dict, categories: dict[str, str]) -> None:
        if collection not in self._writers:
            filename = f"{len(self._writers):03d}.jsonl.enc"
            self._writers[collection] = self._files.enter_context(
                open_text_writer(self.dir / filename))
            self.collections[collection] = {"file": f"{self.prefix}/{filename}", "count": 0,
                                            "columns": dict(categories)}
        clean = {
            key: WITHHELD if never_disclosed(categories.get(key, "")) else value
            for key, value in record.items()
        }
        self._writers[collection].write(json.dumps(clean, default=str, ensure_ascii=False) + "\n")
        self.collections[collection]["count"] += 1
        self._count += 1
        if self._on_progress and self._count % 1000 == 0:
            self._on_progress()  # a heartbeat: this attempt is alive

    def write_copy(self, collection: str, categories: dict[str, str], json_lines, csv) -> int:
        """A whole collection as bytes formatted by the database: `json_lines` (one
        JSON object per line) and `csv` (header first) are each called with a
        `write(bytes)` function and call it with the bytes as they come, never-
        disclosed values already replaced at the source. Kept as two encrypted
        files, written in blocks of 1 MiB; returns the number of records."""
        if collection in self._writers:
            raise ValueError(f"{collection}: written record by record already")
        info = self.collections[collection] = {
            "columns": dict(categories), "count": 0, "format": "copy"}
        for key, suffix, pump in (("file", "jsonl", json_lines), ("csv", "csv", csv)):
            filename = f"{len(self.collections):03d}-{key}.{suffix}.enc"
            with EncryptedWriter(self.dir / filename) as out:
                blocks = _Blocks(out, self._on_progress)
                pump(blocks.write)
                blocks.flush()
            if key == "file":
                info["count"] = blocks.lines
            info[key] = f"{self.prefix}/{filename}"
        self._count += info["count"]
        return info["count"]

    def close(self) -> dict[str, dict]:
        self._files.close()
        self._writers = {}
        return self.collections

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self._files.__exit__(exc_type, exc, tb)  # unpublished files are discarded
            shutil.rmtree(self.dir, ignore_errors=True)


class _Blocks:
    """Small writes gathered into blocks of 1 MiB for an EncryptedWriter; counts
    lines; a heartbeat at most once a second."""

    SIZE = 1 << 20

    def __init__(self, out, on_progress):
        self.out, self.on_progress = out, on_progress
        self.buffer, self.lines, self.beat = bytearray(), 0, time.monotonic()

    def write(self, data) -> None:
        self.buffer += data
        if len(self.buffer) >= self.SIZE:
            self.flush()

    def flush(self) -> None:
        self.out.write(self.buffer)
        self.lines += self.buffer.count(b"\n")
        self.buffer.clear()
        if self.on_progress and time.monotonic() - self.beat >= 1:
            self.on_progress()  # a heartbeat: this attempt is alive
            self.beat = time.monotonic()


def read_records(run, collection_info: dict):
    """Yield the records of one collection written by a RecordSink."""
    with open_text_reader(run_dir(run) / collection_info["file"]) as lines:
        for line in lines:
            yield json.loads(line)
