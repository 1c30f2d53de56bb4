"""Identity verification against a SQL source: one parameterised query reads the
identity table's rows for the address (trimmed, case insensitive, in every
email column: lookups.email_in, served by the column's own index on MariaDB),
LEFT JOINed to the
address columns of one table that refers to it; the points a requester gave are
compared with what those rows hold (identity_match.compare)."""

import sqlalchemy as sa

from requests_app.sources.datamap import DatasetMap, Table
from requests_app.sources.sql.lookups import email_in

_ADDRESS = "user.contact.address"


def email_table(dataset_map: DatasetMap) -> Table | None:
    """The table whose identity columns include the email, if any."""
    return next((t for t in dataset_map.tables.values() if "email" in t.identity), None)


def identity_points(conn, tables, dataset_map: DatasetMap, root: Table, identity) -> set[str]:
    """The points of `identity` that the rows of its address in `root` confirm."""
    from requests_app.sources.identity_match import compare

    table, points = tables[root.name], _Points()
    points.select_own(table, root)
    joined = points.join_addresses(tables, dataset_map, root)
    selected = points.selected or [table.c[c] for c in root.key]
    email = identity.email.strip().lower()
    query = (sa.select(*selected).select_from(joined)
             .where(sa.or_(*(email_in(conn, table.c[column], [email])
                             for field_name, column in root.identity_columns
                             if field_name == "email")))
             .limit(50))
    rows = list(conn.execute(query).mappings())
    if not rows:
        return set()
    return compare(identity.as_dict(), points.held(rows))


def _category_columns(spec: Table, prefix: str) -> list[str]:
    return [name for name, col in spec.columns.items() if col.category.startswith(prefix)]


class _Points:
    """The labelled columns the query selects, and what each label stands for."""

    def __init__(self):
        self.selected: list = []
        self.id_cols: dict[str, str] = {}  # identity field: column
        self.name_cols: list[str] = []
        self.address_sets: list[list[str]] = []  # the labels of one postal address each

    def select_own(self, table, root: Table) -> None:
        """The identity table's own phone, account number, name and address."""
        self.name_cols = _category_columns(root, "user.name")
        self.id_cols = {f: root.identity[f] for f in ("phone", "account_number")
                        if f in root.identity}
        for field_name, column in self.id_cols.items():
            self.selected.append(table.c[column].label(f"id_{field_name}"))
        self.selected += [table.c[c].label(f"name_{i}") for i, c in enumerate(self.name_cols)]
        own = _category_columns(root, _ADDRESS)
        if own:
            self.address_sets.append([f"addr_0_{i}" for i in range(len(own))])
            self.selected += [table.c[c].label(f"addr_0_{i}") for i, c in enumerate(own)]

    def join_addresses(self, tables, dataset_map: DatasetMap, root: Table):
        """The identity table joined to the first table that refers to it and holds
        street-level address columns (one joined table keeps it one small query)."""
        table = tables[root.name]
        for spec in dataset_map.tables.values():
            cols = [c for c in _category_columns(spec, _ADDRESS)
                    if not dataset_map.tables[spec.name].columns[c].category.endswith(
                        ("city", "state", "country"))]
            ref = next((r for r in spec.references if r.to_table == root.name), None)
            if spec is root or not cols or ref is None:
                continue
            other = tables[spec.name]
            n = len(self.address_sets)
            self.address_sets.append([f"addr_{n}_{i}" for i in range(len(cols))])
            self.selected += [other.c[c].label(f"addr_{n}_{i}") for i, c in enumerate(cols)]
            return table.outerjoin(other, other.c[ref.column] == table.c[ref.to_column])
        return table

    def held(self, rows) -> dict[str, list]:
        """What the rows hold, per point, as identity_match.compare takes it."""
        held = {"phone": [], "account_number": [], "name": [], "postal_address": []}
        for row in rows:
            for field_name in self.id_cols:
                held[field_name].append(row[f"id_{field_name}"])
            if self.name_cols:
                held["name"].append([row[f"name_{i}"] for i in range(len(self.name_cols))])
            for labels in self.address_sets:
                parts = [row[label] for label in labels]
                if any(parts):
                    held["postal_address"].append(parts)
        return held
