"""What erasure keeps, and what it lets the database do: rows other people's rows
still use (a shared address, the person's own joint account that another
customer's row points at), rows tables outside the map point at through the
database's own foreign keys, the NOT NULL links that stay, the references it
clears, and what the database itself does when a row is deleted (ON DELETE
CASCADE, SET NULL), which the dry run says and, where it would delete a row
erasure keeps, refuses.

Nothing here formats SQL: lookups are SQLAlchemy constructs."""

from collections import defaultdict

import sqlalchemy as sa

from requests_app.sources.base import SourceError
from requests_app.sources.sql import constraints
from requests_app.sources.sql.driver import _chunks, _in, _ordered
from requests_app.sources.sql.keys import row_key
from requests_app.sources.sql.shape import MapShape
from requests_app.sources.sql.traversal import Traversal

_BY_THE_DATABASE = ("CASCADE", "SET NULL", "SET DEFAULT")


def _still_used(conn, tables, shape: MapShape, trav: Traversal, name: str,
                values: dict[str, set], skip=()) -> tuple[set, set]:
    """((column, value) pairs of `name` that rows in the map other than the
    person's own still refer to, the tables those rows are in). `values`: the
    values looked up, per referenced column; `skip`: referring tables not read
    (deferred leaves: all their rows are the person's)."""
    still_used, users = set(), set()
    for edge in shape.all_edges:  # every reference, whatever its declared direction
        if not edge.forward or edge.to_table != name or edge.from_table in skip:
            continue
        wanted = {v for v in values.get(edge.to_column, ()) if v is not None}
        referrer = tables[edge.from_table].c[edge.from_column]
        mine = trav.own_refs[(edge.from_table, edge.from_column)]
        for chunk in _chunks(conn, _ordered(wanted)):
            query = (sa.select(referrer, sa.func.count()).where(
                _in(conn, referrer, chunk)).group_by(referrer))
            for value, total in conn.execute(query):
                if total > mine.get(value, 0):
                    still_used.add((edge.to_column, value))
                    users.add(edge.from_table)
    return still_used, users


def _shared_rows(conn, tables, shape: MapShape, trav: Traversal, name: str) -> tuple[set, set]:
    """(keys of the shared rows reached forward that erasure may touch: no one
    else's rows in the map refer to them, tables whose rows still use the others)."""
    shared = trav.shared_values.get(name, {})
    if not shared:
        return set(), set()
    values = defaultdict(set)
    for row in shared.values():
        for column, value in row.items():
            values[column].add(value)
    still_used, users = _still_used(conn, tables, shape, trav, name, values)
    return {k for k, v in shared.items()
            if not any(item in still_used for item in v.items())}, users


def _owned_in_use(conn, tables, shape: MapShape, trav: Traversal, name: str,
                  skip) -> tuple[set, set]:
    """(keys of the person's own rows that erasure would delete but that other
    people's rows in the map still point at, through the key: the joint account
    another customer's row names as theirs; those tables). Kept like a shared
    row: deleting it would break their link or change their row."""
    spec = shape.map.tables[name]
    owned = trav.owned.get(name)
    if spec.erase != "delete" or spec.identity or not owned or not spec.primary_key:
        return set(), set()
    still_used, users = _still_used(conn, tables, shape, trav, name,
                                    {spec.primary_key: set(owned)}, skip)
    return {value for _column, value in still_used}, users


def _used_outside(conn, table, spec, outside, candidates) -> tuple[set, set]:
    """(keys among `candidates` that rows of tables outside the map point at through
    the database's own foreign keys, those tables). Only keys to the primary key are
    looked up: a foreign key to another column is left to the dry run to prove."""
    used, users = set(), set()
    if not spec.primary_key:  # composite: several-column foreign keys are left to the dry run
        return used, users
    pk = table.c[spec.primary_key]
    for fk in outside:
        if fk.to_column != spec.primary_key or not candidates:
            continue
        column = sa.column(fk.column, pk.type)
        for chunk in _chunks(conn, _ordered(candidates)):
            found = set(conn.execute(sa.select(column).distinct().select_from(
                sa.table(fk.table, column)).where(_in(conn, column, chunk))).scalars())
            if found:
                used |= found
                users.add(fk.table)
    return used, users


def erasable(conn, tables, shape: MapShape, trav: Traversal, fks) -> tuple[dict, dict, dict]:
    """(the keys erasure may touch per table, rows kept per table, notes per table
    for the plan). Kept: shared rows someone else's rows in the map still use, the
    person's own rows they still point at (_owned_in_use), and rows a table outside
    the map points at (the database's own foreign keys: an address a store also
    uses); notes: `shared_with` (who else uses them) and `stays_linked`."""
    keys, kept, notes = {}, {}, defaultdict(dict)
    outside = constraints.outside_references(shape, fks)
    unread = shape.deletable_leaves(tables)
    for name, spec in shape.map.tables.items():
        erasable_shared, users = _shared_rows(conn, tables, shape, trav, name)
        in_use, owned_users = _owned_in_use(conn, tables, shape, trav, name, unread)
        users |= owned_users
        candidates = (set(trav.owned.get(name, set())) - in_use) | erasable_shared
        used = set()
        if not spec.identity and spec.erase != "retain" and name not in trav.leaves:
            used, outside_users = _used_outside(conn, tables[name], spec,
                                                outside.get(name, []), candidates)
            users |= outside_users
        count = (len(trav.shared_values.get(name, {})) - len(erasable_shared) + len(used)
                 + len(in_use))
        if count:
            kept[name] = count
            notes[name]["shared_with"] = sorted(users)
        if name not in trav.leaves:
            keys[name] = _ordered(candidates - used)
    _stays_linked(shape, tables, trav, keys, notes)
    return keys, kept, dict(notes)


def _stays_linked(shape: MapShape, tables, trav: Traversal, keys: dict, notes) -> None:
    """A kept row of the person's that refers to a row erasure keeps (shared) through
    a NOT NULL column cannot let go of it: the link stays, and the plan says so
    ({"column", "to", "rows", "reason"} under the referring table)."""
    for name, column in shape.cleared_references():
        if tables[name].c[column].nullable:
            continue
        ref = next(r for r in shape.map.tables[name].references if r.column == column)
        if ref.to_column != shape.map.tables[ref.to_table].primary_key:
            continue
        erased = set(keys.get(ref.to_table, ()))
        mine = trav.own_refs[(name, column)]
        rows = sum(n for value, n in mine.items() if value is not None and value not in erased)
        if rows:
            notes[name].setdefault("stays_linked", []).append(
                {"column": column, "to": ref.to_table, "rows": rows, "reason": "NOT NULL"})


def cleared_columns(shape: MapShape, tables) -> dict[str, list[str]]:
    """Per table, the references erasure sets to NULL: to rows it deletes, where the
    column accepts NULL (a NOT NULL one stays linked: _stays_linked)."""
    found = defaultdict(list)
    for table, column in shape.cleared_references():
        if tables[table].c[column].nullable:
            found[table].append(column)
    return found


def _left_to_the_database(conn, tables, shape: MapShape, keys: dict, fk) -> int:
    """Rows of fk.table pointing at the rows erasure deletes that erasure itself
    does not delete or unlink first: the database acts on them (fk.on_delete)."""
    spec, deleted = shape.map.tables.get(fk.table), keys[fk.to_table]
    # Typed like the key it points at (PostgreSQL binds the values as one array).
    column = sa.column(fk.column, tables[fk.to_table].c[fk.to_column].type)
    if spec is None:  # outside the map: every such row is the database's doing
        return sum(conn.execute(sa.select(sa.func.count()).select_from(
            sa.table(fk.table, column)).where(_in(conn, column, chunk))).scalar()
                   for chunk in _chunks(conn, deleted))
    handled = set()
    if spec.erase == "delete" or fk.column in cleared_columns(shape, tables).get(fk.table, ()):
        handled = {tuple(k) if isinstance(k, list) else k for k in keys.get(fk.table, ())}
    columns = [column, *(sa.column(c) for c in spec.key if c != fk.column)]
    found = set()
    for chunk in _chunks(conn, deleted):
        rows = conn.execute(sa.select(*columns).select_from(sa.table(fk.table, *columns))
                            .where(_in(conn, column, chunk))).mappings()
        found |= {row_key(spec, row) for row in rows}
    return len(found - handled)


def by_the_database(conn, tables, shape: MapShape, keys: dict, fks, source: str) -> dict:
    """What the database itself does when erasure deletes the person's rows, per
    deleted table: {"by_the_database": [{"table", "column", "constraint",
    "on_delete", "rows"}]}, for foreign keys ON DELETE CASCADE, SET NULL or SET
    DEFAULT whose rows erasure does not handle itself (an audit log outside the
    map unlinked). A CASCADE that would delete rows of the map that erasure keeps
    (tied to other people too, or kept by the map) is refused, in words."""
    notes = defaultdict(list)
    for fk in fks:
        target = shape.map.tables.get(fk.to_table)
        if (fk.on_delete not in _BY_THE_DATABASE or target is None or target.erase != "delete"
                or fk.to_column != target.primary_key or not keys.get(fk.to_table)
                or fk.table in shape.deletable_leaves(tables)):
            continue
        rows = _left_to_the_database(conn, tables, shape, keys, fk)
        if not rows:
            continue
        if fk.on_delete == "CASCADE" and fk.table in shape.map.tables:
            raise SourceError(
                f"{source}: deleting `{fk.to_table}` rows would make the database delete "
                f"{rows} `{fk.table}` rows that erasure keeps (tied to other people too, or "
                f"kept by the map), through foreign key `{fk.name}` on "
                f"`{fk.table}.{fk.column}` (ON DELETE CASCADE): nothing was changed; erase "
                f"`{fk.to_table}` by update, or change the constraint")
        notes[fk.to_table].append({"table": fk.table, "column": fk.column,
                                   "constraint": fk.name, "on_delete": fk.on_delete,
                                   "rows": rows})
    return {name: {"by_the_database": sorted(found, key=lambda e: (e["table"], e["column"]))}
            for name, found in notes.items()}
