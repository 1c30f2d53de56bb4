"""Row keys: the columns that name one row of each table, as the map declares
them or, when it declares none, as the database does (its primary key, else a
unique constraint or index on NOT NULL columns), read from the reflected table.
A key is never guessed: a table with none of these is refused, with the reason.
Composite keys are tuples; lookups by key use row values `(a, b) IN (...)`."""

import dataclasses

import sqlalchemy as sa

from requests_app.sources.datamap import DatasetMap
from requests_app.sources.sql.driver import _in


def database_key(table: sa.Table) -> tuple[str, ...]:
    """The database's own key of a reflected table: its primary key, else its first
    unique constraint or unique index whose columns are all NOT NULL (a NULL is
    never equal to another, so a nullable unique column names no row); () if none."""
    if table.primary_key is not None and len(table.primary_key.columns):
        return tuple(c.name for c in table.primary_key.columns)
    candidates = [tuple(c.name for c in u.columns) for u in table.constraints
                  if isinstance(u, sa.UniqueConstraint)]
    candidates += [tuple(c.name for c in i.columns) for i in table.indexes if i.unique]
    for names in sorted(candidates, key=lambda n: (len(n), n)):
        if names and all(not table.c[n].nullable for n in names):
            return names
    return ()


def resolve(dataset_map: DatasetMap, tables: dict[str, sa.Table]
            ) -> tuple[DatasetMap, dict[str, list[str]], list[str]]:
    """(the map with every key filled in, {table: key columns read from the
    database}, problems: (table, reason) of the tables with no key anywhere)."""
    read, problems, resolved = {}, [], {}
    for name, spec in dataset_map.tables.items():
        if spec.key or name not in tables:
            resolved[name] = spec
            continue
        key = database_key(tables[name])
        if not key:
            problems.append((name, f"table `{name}`: the map declares no `primary_key` and the "
                            "database has no primary key or unique constraint on NOT NULL "
                            "columns: declare the columns that name one row"))
            resolved[name] = spec
            continue
        read[name] = list(key)
        resolved[name] = dataclasses.replace(spec, key=key)
    if not read:
        return dataset_map, read, problems
    return (DatasetMap(name=dataset_map.name, tables=resolved, lines=dataset_map.lines),
            read, problems)


def row_key(spec, row):
    """The key of a row: its value, or a tuple of values for a composite key."""
    if len(spec.key) == 1:
        return row[spec.key[0]]
    return tuple(row[c] for c in spec.key)


def key_columns(spec, table: sa.Table) -> list:
    return [table.c[c] for c in spec.key]


def key_in(conn, spec, table: sa.Table, keys):
    """The condition finding the rows of these keys (a row value IN for a
    composite key; keys read back from JSON are lists, made tuples here)."""
    if len(spec.key) == 1:
        return _in(conn, table.c[spec.key[0]], keys)
    return sa.tuple_(*key_columns(spec, table)).in_([tuple(k) for k in keys])
