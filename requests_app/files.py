"""Encryption at rest for files written and read as streams, never whole in memory.

The portal keeps personal data in files (packages for consumers, their uploads,
records gathered from sources as JSONL); they are encrypted with
settings.FILE_ENCRYPTION_KEY so that a copied disk or backup gives nothing away.
They can be large, so they are sealed in chunks with AES-256-GCM in the STREAM
construction (Hoang et al., 2015): each chunk is authenticated before any of it is
used, and dropped, reordered or foreign chunks are detected.

    header = b"PPENC1" + prefix        (prefix: 8 random bytes per file)
    chunk  = length (4 bytes, big-endian) + ciphertext + 16-byte tag
    nonce  = prefix + counter          (counter: 4 bytes, big-endian, from 0)
    AAD    = header + counter + final  (final: 1 byte, 1 on the last chunk only)

Chunks hold at most 64 KiB of plaintext; the last one may be empty. A file that
ends before its final chunk was truncated. Any failure raises DecryptionError.
"""

import base64
import contextlib
import hashlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

MAGIC, PREFIX_SIZE, TAG_SIZE = b"PPENC1", 8, 16
CHUNK_SIZE = 64 * 1024


class DecryptionError(Exception):
    """The file is not ours, was altered or truncated, or the key is wrong."""


def _cipher(key: str | bytes | None) -> AESGCM:
    raw = base64.urlsafe_b64decode(settings.FILE_ENCRYPTION_KEY if key is None else key)
    if len(raw) != 32:
        raise ValueError("the file encryption key must be 32 bytes in URL-safe base64")
    return AESGCM(raw)


def _nonce_and_aad(header: bytes, counter: int, final: bool) -> tuple[bytes, bytes]:
    count = counter.to_bytes(4, "big")
    return header[len(MAGIC):] + count, header + count + bytes([final])


class EncryptedWriter(io.RawIOBase):
    """Write-only binary file, encrypted into a temporary file (mode 0o600) next to
    `path` and renamed onto it by close(). On an exception inside `with`, or if it
    is never closed, the temporary file is removed and `path` is left untouched."""

    def __init__(self, path, key=None):
        super().__init__()
        self.path, self._aead = Path(path), _cipher(key)
        self._header = MAGIC + os.urandom(PREFIX_SIZE)
        self._counter, self._buffer, self._hash = 0, bytearray(), hashlib.sha256()
        self.plaintext_size, self.sha256 = 0, None  # sha256: hex digest, set by close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        self._file = os.fdopen(fd, "wb")
        self._file.write(self._header)

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._checkClosed()
        view = memoryview(data).cast("B")
        size = len(view)
        self._hash.update(view)
        self.plaintext_size += size
        while view:  # a full buffer is sealed once more data shows it is not the last
            if len(self._buffer) == CHUNK_SIZE:
                self._seal(final=False)
            take = CHUNK_SIZE - len(self._buffer)
            self._buffer += view[:take]
            view = view[take:]
        return size

    def _seal(self, final: bool) -> None:
        if self._counter >= 2**32:
            raise ValueError("file too large for the 4-byte chunk counter")
        nonce, aad = _nonce_and_aad(self._header, self._counter, final)
        sealed = self._aead.encrypt(nonce, bytes(self._buffer), aad)
        self._file.write(len(sealed).to_bytes(4, "big") + sealed)
        self._buffer.clear()
        self._counter += 1

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._seal(final=True)
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self.sha256 = self._hash.hexdigest()
        super().close()

    def abort(self) -> None:
        """Drop what was written: remove the temporary file, leave `path` alone."""
        if not self.closed:
            with contextlib.suppress(OSError):
                self._file.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)
            super().close()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close() if exc_type is None else self.abort()

    def __del__(self) -> None:
        if hasattr(self, "_file"):
            self.abort()  # never closed: publish nothing


class EncryptedReader(io.RawIOBase):
    """Read-only binary file over an encrypted file; each chunk is authenticated
    before any of its bytes are returned. Wrap in io.BufferedReader for lines."""

    def __init__(self, path, key=None):
        super().__init__()
        self.path, self._aead = Path(path), _cipher(key)
        self._file = open(self.path, "rb")
        self._header = self._file.read(len(MAGIC) + PREFIX_SIZE)
        self._counter, self._final, self._eof, self._plain, self._pos = 0, False, False, b"", 0
        if len(self._header) != len(MAGIC) + PREFIX_SIZE or not self._header.startswith(MAGIC):
            self.close()
            raise DecryptionError(f"{self.path.name}: not an encrypted file (bad header)")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self._pos >= len(self._plain) and not self._eof:
            self._next_chunk()
        n = min(len(buffer), len(self._plain) - self._pos)
        memoryview(buffer).cast("B")[:n] = self._plain[self._pos:self._pos + n]
        self._pos += n
        return n

    def _fail(self, reason: str):
        raise DecryptionError(f"{self.path.name}, chunk {self._counter}: {reason}")

    def _next_chunk(self) -> None:
        head = self._file.read(4)
        if not head:
            if not self._final:
                self._fail("truncated: the file ends before its final chunk")
            self._eof = True
            return
        if self._final:
            self._fail("data after the final chunk")
        length = int.from_bytes(head, "big") if len(head) == 4 else -1
        if not TAG_SIZE <= length <= CHUNK_SIZE + TAG_SIZE:
            self._fail("invalid chunk length (file damaged or truncated)")
        sealed = self._file.read(length)
        if len(sealed) != length:
            self._fail("truncated inside a chunk")
        for final in (False, True):  # only the last chunk needs the second try
            nonce, aad = _nonce_and_aad(self._header, self._counter, final)
            with contextlib.suppress(InvalidTag):
                self._plain = self._aead.decrypt(nonce, sealed, aad)
                self._final, self._pos, self._counter = final, 0, self._counter + 1
                return
        self._fail("authentication failed: wrong key, or the file was altered or reordered")

    def close(self) -> None:
        if hasattr(self, "_file"):
            self._file.close()
        super().close()


def iter_decrypted(path, key=None) -> Iterator[bytes]:
    """Plaintext in chunks of at most 64 KiB, e.g. for a StreamingHttpResponse."""
    with EncryptedReader(path, key) as reader:
        while data := reader.read(CHUNK_SIZE):
            yield data


@contextlib.contextmanager
def open_text_writer(path, key=None) -> Iterator[io.TextIOWrapper]:
    """`with open_text_writer(p) as f: f.write(line)`; nothing is published if the
    block raises. f.buffer is the EncryptedWriter (plaintext_size, sha256)."""
    with EncryptedWriter(path, key) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="\n")
        yield text
        text.flush()


def open_text_reader(path, key=None) -> io.TextIOWrapper:
    """Text (utf-8) reader, iterable line by line, e.g. for JSONL."""
    return io.TextIOWrapper(io.BufferedReader(EncryptedReader(path, key), CHUNK_SIZE),
                            encoding="utf-8", newline="\n")


SEAL = b"PPSEAL1"


def seal(data: bytes, key=None) -> str:
    """A small plaintext (at most a few tens of KiB) encrypted as one AES-256-GCM
    message under FILE_ENCRYPTION_KEY, as text to keep in a database row:
    base64(nonce + ciphertext + tag), the AAD naming the format."""
    nonce = os.urandom(12)
    return base64.b64encode(nonce + _cipher(key).encrypt(nonce, data, SEAL)).decode("ascii")


def unseal(text: str, key=None) -> bytes:
    """The plaintext of seal(); DecryptionError when it was altered or the key is
    wrong."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
        return _cipher(key).decrypt(raw[:12], raw[12:], SEAL)
    except (InvalidTag, ValueError) as exc:
        raise DecryptionError(f"sealed data: {type(exc).__name__}") from None


def remove_on_commit(*relatives: str) -> None:
    """Delete files under MEDIA_ROOT once the current transaction commits (a rollback
    keeps them, with the rows that point at them)."""
    from django.db import transaction

    for relative in relatives:
        transaction.on_commit(
            lambda r=relative: (Path(settings.MEDIA_ROOT) / r).unlink(missing_ok=True))


# --- small secrets at rest -------------------------------------------------------

SEAL_MAGIC = b"PPSEAL1"


def seal_text(text: str, key=None) -> str:
    """A short text (an email holding a one-time code) encrypted with the file key,
    as URL-safe base64: AES-256-GCM, a random 12-byte nonce, the magic as AAD."""
    nonce = os.urandom(12)
    sealed = _cipher(key).encrypt(nonce, text.encode("utf-8"), SEAL_MAGIC)
    return base64.urlsafe_b64encode(SEAL_MAGIC + nonce + sealed).decode("ascii")


def unseal_text(token: str, key=None) -> str:
    """The text seal_text sealed; DecryptionError if it was altered or the key is wrong."""
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
        if not raw.startswith(SEAL_MAGIC):
            raise ValueError("not sealed")
        nonce, sealed = raw[len(SEAL_MAGIC):len(SEAL_MAGIC) + 12], raw[len(SEAL_MAGIC) + 12:]
        return _cipher(key).decrypt(nonce, sealed, SEAL_MAGIC).decode("utf-8")
    except (ValueError, InvalidTag) as exc:
        raise DecryptionError("sealed text: altered, or the key is wrong") from exc
