"""What a dataset map says about its tables, worked out once per connector: the
columns a lookup reads, the references traversal follows (and which way), the
tables that are leaves, the references erasure clears and the order in which it
visits the tables. Nothing here touches a database; what depends on the
reflected tables (their unique columns) takes them as an argument."""

from functools import cached_property

import sqlalchemy as sa

from requests_app.sources.datamap import DatasetMap


def _unique_columns(table: sa.Table) -> set[str]:
    """Columns whose value names one row: the primary key and unique columns."""
    names = {c.name for c in table.columns if c.primary_key or c.unique}
    for constraint in table.constraints:
        if isinstance(constraint, sa.UniqueConstraint) and len(constraint.columns) == 1:
            names.update(c.name for c in constraint.columns)
    for index in table.indexes:
        if index.unique and len(index.columns) == 1:
            names.update(c.name for c in index.columns)
    return names


def _reach(starts: set[str], edges) -> set[str]:
    """The tables `edges` lead to from `starts`."""
    seen, todo = set(starts), list(starts)
    while todo:
        name = todo.pop()
        for edge in edges:
            if edge.from_table == name and edge.to_table not in seen:
                seen.add(edge.to_table)
                todo.append(edge.to_table)
    return seen


def _against(edge) -> str:
    """A reference that forbids `edge`, in words."""
    if edge.forward:  # declared `from`: values flow from the named row into the holder
        return (f"`{edge.from_table}.{edge.from_column}` refers to "
                f"`{edge.to_table}.{edge.to_column}` with direction `from`: "
                f"`{edge.from_table}` is found from `{edge.to_table}`, not the other way")
    return (f"`{edge.to_table}.{edge.to_column}` refers to "
            f"`{edge.from_table}.{edge.from_column}` with direction `to`: "
            f"`{edge.from_table}` is found from `{edge.to_table}`, not the other way")


class MapShape:
    """A parsed dataset map as traversal and erasure read it."""

    def __init__(self, dataset_map: DatasetMap):
        self.map = dataset_map
        self.declared = dataset_map  # as written: keys may be missing (see use_keys)
        self.keys_read: dict[str, list[str]] = {}  # keys read from the database
        self.keys_for = None  # the reflected tables use_keys was given last
        self._unique = None  # (tables, {table: unique columns}) of the last reflection

    def use_keys(self, resolved: DatasetMap, read: dict, tables) -> None:
        """The map with the keys the database declares where the map declares none
        (sql/keys.resolve), for these reflected tables: what depends on the map's
        columns is worked out again."""
        self.map, self.keys_read, self.keys_for = resolved, read, tables
        for name in ("_needed", "edges", "all_edges", "follows", "forwards", "to_people",
                     "against_direction", "categories", "identity_cols"):
            self.__dict__.pop(name, None)
        self._unique = None

    @cached_property
    def _needed(self) -> dict[str, tuple[str, ...]]:
        return {n: tuple(sorted(spec.column_names() | self.map.referenced_columns(n)))
                for n, spec in self.map.tables.items()}

    def needed(self, name: str) -> tuple[str, ...]:
        """The columns of a table that the map names (keys, identities, references,
        categories, collection time) or that references into it follow: a lookup
        reads those only. Other columns are none of our business, and a column
        dropped from the database that the map never used breaks nothing."""
        return self._needed[name]

    @cached_property
    def identity_cols(self) -> dict[str, set[str]]:
        """Each table's identity columns (of every identity type)."""
        return {n: {c for _f, c in spec.identity_columns} for n, spec in self.map.tables.items()}

    @cached_property
    def categories(self) -> dict[str, dict[str, str]]:
        """Each table's mapped columns and their categories, as a sink takes them."""
        return {n: {c.name: c.category for c in spec.columns.values()}
                for n, spec in self.map.tables.items()}

    @cached_property
    def declared_needed(self) -> dict[str, set[str]]:
        """The columns the map as written names per table (needed() without the keys
        read from a database): what a reflection must hold, whichever database
        the keys were read from before."""
        declared = self.declared
        return {n: spec.column_names() | declared.referenced_columns(n)
                for n, spec in declared.tables.items()}

    def mapped(self, table: sa.Table) -> list:
        return [table.c[name] for name in self.needed(table.name)]

    @cached_property
    def edges(self) -> list:
        """The edges traversal follows: each reference both ways, or only the way its
        declared direction allows (Fides `direction`; DatasetMap.edges)."""
        return self.map.edges(as_declared=True)

    @cached_property
    def all_edges(self) -> list:
        """Every reference both ways, whatever its direction: who else points at a
        row (keep.py) is read through all of them."""
        return self.map.edges()

    @cached_property
    def follows(self) -> dict[str, set[str]]:
        """The columns of each table whose values traversal keeps: those it follows
        and those other rows refer to it by (whether a shared row is still used)."""
        return {n: {e.from_column for e in self.all_edges if e.from_table == n}
                for n in self.map.tables}

    @cached_property
    def forwards(self) -> dict[str, set[str]]:
        """The columns of each table that refer to another table's rows."""
        return {n: {e.from_column for e in self.all_edges if e.from_table == n and e.forward}
                for n in self.map.tables}

    @cached_property
    def against_direction(self) -> dict[str, str]:
        """Tables that traversal never reaches because every reference leading to
        them is declared the other way (Fides `direction`), with the reason in
        words, {table: why}: the gather and the dry run say so."""
        starts = {n for n, t in self.map.tables.items() if t.identity_columns}
        lost = _reach(starts, self.all_edges) - _reach(starts, self.edges)
        kept = set(self.edges)
        return {name: "not reached: the map's references lead to it only against their "
                      "declared direction (" + "; ".join(sorted(
                          _against(e) for e in self.all_edges
                          if e.to_table == name and e not in kept)) + ")"
                for name in sorted(lost)}

    @cached_property
    def to_people(self) -> dict[str, list[tuple[str, str, str]]]:
        """References into identity tables, (column, table, column) per table: a
        shared row that points at a person who is not this one (an address whose
        customer_id is someone else's) is theirs."""
        return {name: [(r.column, r.to_table, r.to_column) for r in spec.references
                       if self.map.tables[r.to_table].identity]
                for name, spec in self.map.tables.items()}

    def unique(self, tables: dict[str, sa.Table]) -> dict[str, set[str]]:
        """Unique columns that references lead to, per table, worked out once per
        reflected schema: rows seen there need no second lookup."""
        if self._unique is None or self._unique[0] is not tables:
            unique = {n: _unique_columns(tables[n]) & self.follows[n] for n in self.map.tables}
            self._unique = (tables, unique)
        return self._unique[1]

    def leaves(self, tables: dict[str, sa.Table]) -> set[str]:
        """Tables whose rows are all the person's own and lead nowhere else: no
        identity columns, no other table refers to them, and their one reference
        points at a unique column (so following it back finds only the row it came
        from). Traversal reaches them only backwards from the person's own rows
        (web_events from the person's devices), so every row it would find there is
        theirs, and the values it would look them up by are all erasure needs: it
        can delete them on the server, set-based, without reading them."""
        referenced = {r.to_table for spec in self.map.tables.values() for r in spec.references}
        leaves = set()
        for name, spec in self.map.tables.items():
            if spec.identity or name in referenced or len(spec.references) != 1:
                continue
            ref = spec.references[0]
            if ref.to_column in _unique_columns(tables[ref.to_table]):
                leaves.add(name)
        return leaves

    def deletable_leaves(self, tables: dict[str, sa.Table]) -> set[str]:
        return {n for n in self.leaves(tables) if self.map.tables[n].erase == "delete"}

    def cleared_references(self) -> list[tuple[str, str]]:
        """(table, column) of kept rows that point at rows erasure deletes."""
        cleared = []
        for edge in self.map.edges():
            source, target = self.map.tables[edge.from_table], self.map.tables[edge.to_table]
            refs = {(r.column, r.to_table, r.to_column) for r in source.references}
            if (edge.from_column, edge.to_table, edge.to_column) in refs:
                if target.erase == "delete" and source.erase != "delete":
                    cleared.append((source.name, edge.from_column))
        return cleared

    def erase_order(self) -> list[str]:
        """Tables in the order erasure visits them: rows that point at others before
        the rows they point at, identity tables last (they are how we find the rest)."""
        tables = self.map.tables
        order, visiting, done = [], set(), set()

        def visit(name):
            if name in done or name in visiting:
                return
            visiting.add(name)
            for other in tables.values():
                if any(r.to_table == name for r in other.references) and other.name != name:
                    visit(other.name)
            visiting.discard(name)
            done.add(name)
            order.append(name)

        for name in sorted(tables, key=lambda n: bool(tables[n].identity)):
            visit(name)
        return order
