"""What the database itself says erasure must respect: its foreign keys (read, not
taken from the map), the checks of a map against them at save time, and database
errors put into words (table, column, constraint) without a value in them.

Nothing here formats SQL: lookups are SQLAlchemy constructs."""

import contextlib
import re
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from requests_app.sources.base import SourceError
from requests_app.sources.sql import errors
from requests_app.sources.sql.driver import mysql_code
from requests_app.sources.sql.shape import MapShape

# PostgreSQL's SQLSTATEs of integrity errors, in words.
_SQLSTATE = {"23502": "NOT NULL", "23503": "foreign key", "23505": "unique", "23514": "check"}
# SQLite's messages name no value: "NOT NULL constraint failed: t.c" and the like.
_SQLITE = re.compile(r"^(NOT NULL|UNIQUE|CHECK|FOREIGN KEY) constraint failed(?:: ([\w., ]+))?$")


@dataclass(frozen=True)
class ForeignKey:
    """A single-column foreign key the database declares."""

    table: str
    column: str
    to_table: str
    to_column: str
    name: str
    on_delete: str


def foreign_keys(conn) -> list[ForeignKey]:
    """Every single-column foreign key of the database's default schema."""
    found = []
    inspector = sa.inspect(conn)
    for (_schema, table), keys in inspector.get_multi_foreign_keys().items():
        for fk in keys:
            if len(fk["constrained_columns"]) != 1 or fk.get("referred_schema"):
                continue
            found.append(ForeignKey(
                table, fk["constrained_columns"][0], fk["referred_table"],
                fk["referred_columns"][0], fk.get("name") or "(unnamed)",
                ((fk.get("options") or {}).get("ondelete") or "NO ACTION").upper()))
    return found


def outside_references(shape: MapShape, fks: list[ForeignKey]) -> dict[str, list[ForeignKey]]:
    """Foreign keys from tables outside the map into mapped tables, per mapped table:
    rows they point at are used by something the map does not describe (a store at
    an address), so erasure treats them as shared."""
    found: dict[str, list[ForeignKey]] = {}
    for fk in fks:
        if fk.to_table in shape.map.tables and fk.table not in shape.map.tables:
            found.setdefault(fk.to_table, []).append(fk)
    return found


def _unique_key(inspector, name: str, column: str) -> bool:
    if inspector.get_pk_constraint(name).get("constrained_columns") == [column]:
        return True
    uniques = [u["column_names"] for u in inspector.get_unique_constraints(name)]
    uniques += [i["column_names"] for i in inspector.get_indexes(name) if i.get("unique")]
    return [column] in uniques


def erasure_problems(conn, shape: MapShape, columns: dict, source: str) -> list[str]:
    """What would make erasure fail or leave rows half-done, found at save time:
    a key that is not unique, `erase: null` on a NOT NULL column, and deletions
    that would break a foreign key the map does not handle. `columns`: the
    inspector's columns of each mapped table that exists ({table: {name: info}})."""
    problems, inspector, tables = [], sa.inspect(conn), shape.map.tables
    for name, spec in tables.items():
        if name not in columns:
            continue
        where = f"line {shape.map.lines.get(name)}: source `{source}`, table `{name}`"
        if spec.primary_key in columns[name] and not _unique_key(inspector, name,
                                                                 spec.primary_key):
            problems.append(f"{where}: key column `{spec.primary_key}` is not unique in the "
                            "database (no primary key or unique constraint on it alone)")
        for column in spec.columns.values():
            info = columns[name].get(column.name)
            if spec.erase == "update" and column.erase == "null" and info is not None \
                    and not info["nullable"]:
                problems.append(f"{where}: column `{column.name}` is NOT NULL, so erasure "
                                "cannot set it to NULL (`erase: null`): use mask, hash or "
                                "retain")
    for fk in foreign_keys(conn):
        problem = _foreign_key_problem(shape, fk, source)
        if problem:
            problems.append(problem)
    return problems


def _foreign_key_problem(shape: MapShape, fk: ForeignKey, source: str) -> str | None:
    tables = shape.map.tables
    target = tables.get(fk.to_table)
    if target is None or target.erase != "delete":
        return None
    where = (f"line {shape.map.lines.get(fk.to_table)}: source `{source}`, table `{fk.table}`, "
             f"column `{fk.column}` refers to `{fk.to_table}.{fk.to_column}` (foreign key "
             f"`{fk.name}`)")
    if fk.table not in tables:
        if target.identity and fk.on_delete not in ("CASCADE", "SET NULL", "SET DEFAULT"):
            # The person's own rows: never kept as shared. Where the database
            # deletes or unlinks the rows pointing at them itself, the dry run
            # says so (keep.by_the_database).
            return (f"{where}, which erasure deletes: `{fk.table}` is not in the map, so the "
                    f"deletion would break `{fk.name}`; map `{fk.table}` or erase "
                    f"`{fk.to_table}` by update")
        return None  # rows it points at are kept as shared (outside_references)
    source_spec = tables[fk.table]
    declared = any(r.column == fk.column and r.to_table == fk.to_table
                   for r in source_spec.references)
    if source_spec.erase != "delete" and not declared and fk.table != fk.to_table:
        return (f"{where}, which erasure deletes, but the map does not declare this "
                "reference: declare it, so that erasure clears it or keeps the row")
    return None


# MariaDB/MySQL errors: (code, message). Only the names are taken from a message,
# never a value (1062 "Duplicate entry '<value>' for key ..." quotes the row's value).
_MYSQL_NOT_NULL = re.compile(r"Column '([^']+)' cannot be null")
_MYSQL_FOREIGN_KEY = re.compile(r"\(`[^`]+`\.`([^`]+)`, CONSTRAINT `([^`]+)` FOREIGN KEY "
                                r"\(`([^`]+)`\)")
_MYSQL_DUPLICATE_KEY = re.compile(r"for key '([^']+)'")


def _mysql(orig) -> tuple:
    """(kind, constraint, column, table) of a MariaDB/MySQL error, from names only."""
    code, message = mysql_code(orig), str(orig.args[1]) if len(orig.args) > 1 else ""
    if code == 1048 and (match := _MYSQL_NOT_NULL.search(message)):
        return "NOT NULL", None, match.group(1), None
    if code in (1451, 1452) and (match := _MYSQL_FOREIGN_KEY.search(message)):
        return "foreign key", match.group(2), match.group(3), match.group(1)
    if code == 1062 and (match := _MYSQL_DUPLICATE_KEY.search(message)):
        return "unique", match.group(1), None, None
    return None, None, None, None


def in_words(exc: Exception, table: str, doing: str, fks: list[ForeignKey]) -> str:
    """A database error met while erasing `table` (`doing`: delete, update...), in
    words: the table, the column and the constraint, never a value (a DETAIL line
    quotes the row's key and values, so it is never used)."""
    orig = getattr(exc, "orig", exc)
    diag = getattr(orig, "diag", None)
    kind, constraint, column = None, None, None
    if diag is not None:
        kind = _SQLSTATE.get(getattr(orig, "sqlstate", None) or "")
        constraint, column = diag.constraint_name, diag.column_name
        table_named = diag.table_name
    elif mysql_code(orig):
        kind, constraint, column, table_named = _mysql(orig)
    else:
        match = _SQLITE.match(str(orig).strip())
        table_named = None
        if match:
            kind = match.group(1).lower() if match.group(1) != "NOT NULL" else "NOT NULL"
            column = match.group(2)
    text = f"{doing} of `{table}` rows failed"
    if kind:
        text += f": {kind} constraint"
    if constraint:
        text += f" `{constraint}`"
    if column:
        text += f" on column `{column}`" + (f" of `{table_named}`" if table_named else "")
    if kind == "foreign key" or (kind is None and isinstance(exc, sa_exc.IntegrityError)):
        named = [fk for fk in fks if fk.name == constraint]
        into = named or [fk for fk in fks if table in (fk.to_table, fk.table)]
        if into:
            text += " (foreign keys: " + ", ".join(
                f"`{fk.name}` on `{fk.table}.{fk.column}` -> `{fk.to_table}.{fk.to_column}`"
                for fk in into) + ")"
    elif kind is None:
        text += f": {errors.in_words(exc)}"
    return text


def preflight(conn, tables, shape: MapShape, cleared: dict, acted_on, source: str) -> None:
    """Before erasure writes anything: each statement it will run, on no row
    (`WHERE false`), in one transaction rolled back. A database that refuses one
    (no DELETE or UPDATE permission on a table, a column gone) stops the erasure
    here, in words, with nothing written: not after the first tables' batches are
    committed. `acted_on`: the tables erasure has rows to act on."""
    with conn.begin() as trans:
        for name in shape.erase_order():
            spec, table = shape.map.tables[name], tables[name]
            if name not in acted_on:
                continue
            columns = list(cleared.get(name, ()))
            if spec.erase == "update":
                columns += [c.name for c in spec.columns.values() if c.erase != "retain"]
            if spec.erase == "delete":
                statement, doing = sa.delete(table), "delete"
            elif columns:
                statement = sa.update(table).values({c: sa.null() for c in columns})
                doing = "update" if spec.erase == "update" else "clearing references"
            else:
                continue
            try:
                conn.execute(statement.where(sa.false()))
            except sa_exc.DBAPIError as exc:
                raise SourceError(f"{source}: {doing} of `{name}` rows refused: "
                                  f"{errors.in_words(exc)}; nothing was erased") from None
        trans.rollback()


@contextlib.contextmanager
def enforcing(conn):
    """SQLite checks foreign keys only when asked, per connection and outside a
    transaction: asked here, so that erasure meets them as PostgreSQL's does."""
    sqlite = conn.dialect.name == "sqlite"
    if sqlite:
        conn.execute(sa.text("PRAGMA foreign_keys = ON"))
        conn.commit()
    try:
        yield
    finally:
        if sqlite:
            conn.rollback()
            conn.execute(sa.text("PRAGMA foreign_keys = OFF"))
            conn.commit()
