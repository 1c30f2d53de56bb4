"""Signed checkpoints of the audit chain's head, kept outside the database.

A checkpoint says: at time `at`, the chain's newest event was `seq` (its id), its
hash was `head`, and the chain held `count` events. It is signed with Ed25519
(the seed is AUDIT_CHECKPOINT_KEY, which the database never holds) and appended
as one JSON line to a file per day, `audit-checkpoints-YYYY-MM-DD.jsonl`, in
AUDIT_CHECKPOINT_DIR: a directory the office can put on append-only or write-once
storage. Whoever rewrites, re-chains, truncates or cuts the tail of the table
cannot make it agree with the checkpoints again (chain.verify_chain checks them).
"""

import base64
import datetime
import fcntl
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.conf import settings

PREFIX = "audit-checkpoints-"
SUFFIX = ".jsonl"
SIGNED_FIELDS = ("seq", "head", "count", "at", "key")


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    head: str
    count: int
    at: str
    key: str
    sig: str
    where: str = ""  # file:line, for messages (not signed)

    def line(self) -> str:
        return json.dumps({**_signed(self.seq, self.head, self.count, self.at, self.key),
                           "sig": self.sig}, sort_keys=True, separators=(",", ":"))


class BadCheckpoint(Exception):
    """A line that is not a checkpoint this key signed: the file was altered."""


def _private_key() -> Ed25519PrivateKey:
    seed = base64.urlsafe_b64decode(settings.AUDIT_CHECKPOINT_KEY.encode())
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key() -> str:
    """The public key, URL-safe base64 of its 32 raw bytes: what an auditor needs to
    check a checkpoint's signature (and cannot sign one with)."""
    raw = _private_key().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.urlsafe_b64encode(raw).decode()


def key_id() -> str:
    return hashlib.sha256(public_key().encode()).hexdigest()[:16]


def _signed(seq: int, head: str, count: int, at: str, key: str) -> dict:
    return {"seq": seq, "head": head, "count": count, "at": at, "key": key}


def _message(fields: dict) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def sign(seq: int, head: str, count: int, at: datetime.datetime) -> Checkpoint:
    stamp = at.astimezone(datetime.timezone.utc).isoformat()
    fields = _signed(seq, head, count, stamp, key_id())
    signature = _private_key().sign(_message(fields))
    return Checkpoint(seq, head, count, stamp, fields["key"],
                      base64.urlsafe_b64encode(signature).decode())


def parse(text: str, where: str = "") -> Checkpoint:
    """One line back into a checkpoint, its signature checked; BadCheckpoint if the
    line is not one this installation's key signed."""
    try:
        data = json.loads(text)
        fields = _signed(int(data["seq"]), str(data["head"]), int(data["count"]),
                         str(data["at"]), str(data["key"]))
        signature = base64.urlsafe_b64decode(str(data["sig"]).encode())
    except (ValueError, KeyError, TypeError) as exc:
        raise BadCheckpoint(f"{where}: not a checkpoint ({type(exc).__name__})") from None
    if fields["key"] != key_id():
        raise BadCheckpoint(f"{where}: signed by another key ({fields['key']})")
    try:
        _private_key().public_key().verify(signature, _message(fields))
    except InvalidSignature:
        raise BadCheckpoint(f"{where}: its signature does not verify (the line was "
                            "altered)") from None
    return Checkpoint(**fields, sig=data["sig"], where=where)


def directory() -> Path:
    return Path(settings.AUDIT_CHECKPOINT_DIR)


def day_file(day: datetime.date) -> Path:
    return directory() / f"{PREFIX}{day.isoformat()}{SUFFIX}"


def files() -> list[Path]:
    """The daily files, oldest first (their names sort by date)."""
    if not directory().is_dir():
        return []
    return sorted(p for p in directory().iterdir()
                  if p.name.startswith(PREFIX) and p.name.endswith(SUFFIX))


def read(path: Path):
    """The checkpoints of one file, in order; BadCheckpoint at the first bad line."""
    with open(path, encoding="utf-8") as f:
        for number, text in enumerate(f, start=1):
            if text.strip():
                yield parse(text, f"{path.name}:{number}")


def read_all():
    """Every checkpoint, oldest first."""
    for path in files():
        yield from read(path)


def latest() -> Checkpoint | None:
    """The newest checkpoint: the last line of the newest file that has one."""
    for path in reversed(files()):
        newest = None
        for checkpoint in read(path):
            newest = checkpoint
        if newest is not None:
            return newest
    return None


def append(checkpoint: Checkpoint) -> Path:
    """Add one line to the file of the checkpoint's day (UTC), never rewriting
    what is there: opened for appending only, one write, flushed to disk; a lock
    keeps two writers from interleaving."""
    path = day_file(datetime.datetime.fromisoformat(checkpoint.at).date())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, (checkpoint.line() + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return path
