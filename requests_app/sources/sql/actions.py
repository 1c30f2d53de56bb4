"""What erasure does to a batch of rows: delete them, or update them, clearing
references to deleted rows and each column as the map says: NULL, masked (its
shape kept) or replaced by a keyed hash (kept joinable). Every action is
idempotent, so that an erasure that resumes can redo a batch."""

import hashlib
import hmac
import re

import sqlalchemy as sa
from django.conf import settings

from requests_app.sources.sql.driver import _chunks
from requests_app.sources.sql.keys import key_columns, key_in, row_key
from requests_app.sources.sql.shape import _unique_columns

_HASHED = re.compile(r"^~[0-9a-f]{8,64}$")


def mask(value):
    """Keep the shape: the first character of each run of letters or digits, the
    rest as x (letters) or 0 (digits), punctuation as it was. Masking a masked
    value changes nothing. Non-text values become NULL."""
    if not isinstance(value, str):
        return None

    def run(m):
        s = m.group(0)
        return s[0] + "".join("0" if c.isdigit() else "x" for c in s[1:])

    return re.sub(r"[^\W_]+", run, value)


def keyed_hash(value, length: int | None = None):
    """A keyed hash (HMAC-SHA256 under IDENTITY_HASH_KEY): equal values stay equal, so the
    column can still be joined on, but cannot be read back. Idempotent."""
    if value is None:
        return None
    if not isinstance(value, str):
        return None
    if _HASHED.match(value):
        return value
    digest = hmac.new(settings.IDENTITY_HASH_KEY.encode(), value.encode(),
                      hashlib.sha256).hexdigest()
    size = 32 if length is None else max(8, min(64, length - 1))
    return "~" + digest[:size]


def _hashed_in_row(value, key, length: int | None, unique: bool):
    """The keyed hash a row's value is replaced by. In a unique column two people's
    hashes must differ too (the same person erased twice, say): salted with the
    row's key."""
    if unique and isinstance(value, str):
        return keyed_hash(f"{key}:{value}", length) if not _HASHED.match(value) else value
    return keyed_hash(value, length)


def _erased(value, action: str) -> bool:
    if value is None:
        return True
    if action == "hash":
        return isinstance(value, str) and bool(_HASHED.match(value))
    if action == "mask":
        return mask(value) == value
    return False


def _erase_batch(conn, spec, table, keys, cleared_columns) -> int:
    """Erase the rows of these primary keys as the table's `erase` says; the number
    of rows the database says it deleted or changed."""
    changed = 0
    if spec.erase == "delete":
        # A chain of the table's own rows (a ticket's parent ticket): its links
        # among the rows deleted are cleared first, for InnoDB checks a
        # self-reference row by row within one DELETE and refuses a parent deleted
        # before its child (PostgreSQL and SQLite check at the statement's end).
        chained = {r.column: None for r in spec.references
                   if r.to_table == spec.name and table.c[r.column].nullable}
        for chunk in _chunks(conn, keys):
            where = key_in(conn, spec, table, chunk)
            if chained:
                conn.execute(sa.update(table).where(where).values(chained))
            changed += conn.execute(sa.delete(table).where(where)).rowcount
        return changed
    nulls = {c: None for c in cleared_columns}
    if spec.erase == "update":
        nulls |= {c.name: None for c in spec.columns.values() if c.erase == "null"}
    computed = [c for c in spec.columns.values()
                if spec.erase == "update" and c.erase in ("mask", "hash")]
    if nulls:
        for chunk in _chunks(conn, keys):
            changed += conn.execute(
                sa.update(table).where(key_in(conn, spec, table, chunk)).values(**nulls)).rowcount
    if computed:
        rows = [row for chunk in _chunks(conn, keys) for row in conn.execute(
            sa.select(*key_columns(spec, table), *(table.c[c.name] for c in computed))
            .where(key_in(conn, spec, table, chunk))).mappings()]
        params = _computed_values(spec, table, computed, rows)
        if params:
            stmt = (sa.update(table).where(*(col == sa.bindparam(f"_pk{i}") for i, col in
                                             enumerate(key_columns(spec, table))))
                    .values({c.name: sa.bindparam(c.name) for c in computed}))
            conn.execute(stmt, params)
            changed = max(changed, len(params))
    return changed


def _computed_values(spec, table, computed, rows) -> list[dict]:
    """The masked or hashed values of each row ({"_pk": key, column: value})."""
    unique = _unique_columns(table)
    params = []
    for row in rows:
        key = row_key(spec, row)
        values = {f"_pk{i}": row[c] for i, c in enumerate(spec.key)}
        for c in computed:
            length = getattr(table.c[c.name].type, "length", None)
            if c.erase == "hash":
                values[c.name] = _hashed_in_row(row[c.name], key, length, c.name in unique)
            else:
                values[c.name] = mask(row[c.name])
        params.append(values)
    return params
