"""Dataset maps: which tables of a SQL source hold personal data, how to find a
person's rows from their identity, how tables refer to each other, the data
category of each column and what erasure does to it.

    name: demo_shop
    identity_types: {loyalty_id: Loyalty card number}   # the forms' labels of your own types
    tables:
      customers:
        primary_key: id
        identity: {email: email, phone: phone, account_number: customer_number}
        references:
          - {column: referred_by, to: customers.id}
          - {column: address_id, to: addresses.id, direction: to}  # as Fides said
        columns:
          email: {category: user.contact.email, erase: hash}
          phone: user.contact.phone_number          # erase defaults to null
        erase: update          # delete | update | retain
        legal_basis: "..."     # required when anything is retained
      orders:
        collected_at: placed_at   # when each row was collected: a Right to Know
                                  # answer holds the rows of the period asked for

Errors name the line of the map they come from. `fides.from_fides` turns a Fides
dataset (fides_meta.identity, references) into this form.
"""

import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache

import yaml

from requests_app.sources.categories import is_category

# The identity fields the portal's forms collect; a map may name others too (a
# loyalty id, a device id: any lower-case name), looked up when a request's identity
# supplies them and reported as not looked up when it does not.
IDENTITY_FIELDS = ("email", "phone", "account_number")
_IDENTITY_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
TABLE_ACTIONS = ("delete", "update", "retain")
COLUMN_ACTIONS = ("null", "mask", "hash", "retain")
_TABLE_KEYS = {"primary_key", "identity", "references", "columns", "erase", "legal_basis",
               "disclosures", "collected_at"}
# A table that logs disclosures to third parties names its columns so (see
# services/disclosures.py): recipient and time required, the rest optional.
DISCLOSURE_KEYS = {"third_party": True, "at": True, "categories": False, "purpose": False}


class DatasetMapError(Exception):
    def __init__(self, errors: list[tuple[int | None, str]]):
        self.errors = errors
        super().__init__("; ".join(self.messages))

    @property
    def messages(self) -> list[str]:
        return [f"line {line}: {msg}" if line else msg for line, msg in self.errors]


@dataclass(frozen=True)
class Column:
    name: str
    category: str
    erase: str


@dataclass(frozen=True)
class Reference:
    column: str
    to_table: str
    to_column: str
    # As a Fides dataset declared it: "to" (values flow from this row to the row it
    # names: that row is reached from this one, never this one from it), "from"
    # (values flow from the named row into this one: this row is reached from it,
    # never it from this row), "" (not said: both ways). Traversal follows a
    # reference only the ways it allows (DatasetMap.edges(as_declared=True)); the
    # check that a row tied to someone else is never the person's reads every
    # reference, whatever its direction.
    direction: str = ""


@dataclass(frozen=True)
class Table:
    name: str
    # The key columns the map declares (several: a composite key); empty when it
    # declares none: the database's own primary key or unique constraint is read
    # when the table is reflected (sql/keys.py), never guessed.
    key: tuple
    identity: dict  # identity field -> its first column (see identity_columns)
    references: tuple
    columns: dict
    erase: str
    legal_basis: str
    # {"third_party": column, "at": column, "categories": column, "purpose": column}
    disclosures: dict | None = None
    # The column saying when each row was collected (a date or a time), if any.
    collected_at: str = ""
    # Every (identity field, column) pair: a table may hold two email columns.
    identity_columns: tuple = ()

    @property
    def primary_key(self) -> str:
        """The key column of a table with a one-column key ("" otherwise)."""
        return self.key[0] if len(self.key) == 1 else ""

    def column_names(self) -> set[str]:
        names = {*self.key, *(c for _f, c in self.identity_columns), *self.columns}
        if self.collected_at:
            names.add(self.collected_at)
        names.update(r.column for r in self.references)
        names.update((self.disclosures or {}).values())
        return names


@dataclass(frozen=True)
class Edge:
    """Rows of `to_table` whose `to_column` equals `from_column` of rows of `from_table`.
    `forward`: from the row holding a reference to the row it refers to (an order to
    its address); backward: from a row to the rows that refer to it (a customer to
    their orders)."""

    from_table: str
    from_column: str
    to_table: str
    to_column: str
    forward: bool


@dataclass(frozen=True)
class DatasetMap:
    name: str
    tables: dict
    lines: dict = field(default_factory=dict, compare=False)  # table -> line
    # How the forms name the map's own identity types: {loyalty_id: "Loyalty card number"}.
    identity_labels: dict = field(default_factory=dict)

    def identity_types(self) -> dict[str, str]:
        """Every identity type a table looks people up by, beyond the portal's own
        fields (email, phone, account number), with the label the forms show."""
        names = {f for t in self.tables.values() for f, _c in t.identity_columns}
        return {n: self.identity_labels.get(n) or identity_label(n)
                for n in sorted(names - set(IDENTITY_FIELDS))}

    def edges(self, *, as_declared: bool = False) -> list[Edge]:
        """References as edges both ways: forward (from the row holding it to the row
        it names) and backward. `as_declared`: only the ways a reference's
        `direction` allows (Fides: `to` forward only, `from` backward only)."""
        result = []
        for table in self.tables.values():
            for ref in table.references:
                if not as_declared or ref.direction != "from":
                    result.append(Edge(table.name, ref.column, ref.to_table, ref.to_column,
                                       True))
                if not as_declared or ref.direction != "to":
                    result.append(Edge(ref.to_table, ref.to_column, table.name, ref.column,
                                       False))
        return result

    def referenced_columns(self, table: str) -> set[str]:
        """Columns of `table` that traversal needs to follow references."""
        return {e.from_column for e in self.edges() if e.from_table == table}


def identity_label(name: str) -> str:
    """loyalty_id -> "Loyalty ID": a label for an identity type the map does not name."""
    words = [w.upper() if w in ("id", "uuid") else w for w in name.split("_") if w]
    words[0] = words[0][:1].upper() + words[0][1:]
    return " ".join(words)


class _LineDict(dict):
    line = 0
    key_lines: dict


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader, node):
    loader.flatten_mapping(node)
    result = _LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _line(mapping, key=None):
    if isinstance(mapping, _LineDict):
        return mapping.key_lines.get(key, mapping.line) if key is not None else mapping.line
    return None


@lru_cache(maxsize=64)
def parse(text: str) -> DatasetMap:
    """Parse and validate a dataset map; raise DatasetMapError listing every problem.
    Cached by text: every source task needs its map, and the text rarely changes."""
    try:
        doc = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise DatasetMapError([_yaml_error(exc)]) from None
    errors: list[tuple[int | None, str]] = []
    if not isinstance(doc, dict) or not isinstance(doc.get("tables"), dict) or not doc["tables"]:
        raise DatasetMapError([(_line(doc), "the map needs a `tables:` mapping with at least one table")])
    for key in doc:
        if key not in ("name", "tables", "identity_types"):
            errors.append((_line(doc, key), f"unknown key `{key}` (expected name, tables, "
                                            "identity_types)"))
    labels = _parse_identity_labels(doc, errors)
    tables = {}
    for name, spec in doc["tables"].items():
        table = _parse_table(str(name), spec, _line(doc["tables"], name), errors)
        if table:
            tables[table.name] = table
    _check_references(tables, doc["tables"], errors)
    if errors:
        raise DatasetMapError(errors)
    lines = {name: _line(doc["tables"], name) for name in tables}
    return DatasetMap(name=str(doc.get("name", "")), tables=tables, lines=lines,
                      identity_labels=labels)


def _yaml_error(exc: yaml.YAMLError) -> tuple[int | None, str]:
    """(line, words) of a YAML syntax error: the line where the parser gave up, and
    the line of what it was reading there (a `{` left open two lines up)."""
    mark = getattr(exc, "problem_mark", None)
    words = f"not valid YAML: {getattr(exc, 'problem', None) or exc}"
    context, started = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and started is not None and mark is not None and started.line != mark.line:
        words += f" ({context} that starts on line {started.line + 1})"
    return (mark.line + 1 if mark else None), words


def _parse_identity_labels(doc, errors) -> dict:
    """`identity_types: {loyalty_id: Loyalty card number}`: the forms' labels."""
    raw = doc.get("identity_types") or {}
    if not isinstance(raw, dict) or not all(
            isinstance(k, str) and _IDENTITY_NAME.match(k) and isinstance(v, str) and v.strip()
            for k, v in raw.items()):
        errors.append((_line(doc, "identity_types"), "`identity_types` maps an identity type "
                       "(a lower-case name) to the label the forms show"))
        return {}
    return {k: v.strip() for k, v in raw.items()}


def _parse_table(name, spec, line, errors):
    where = f"table `{name}`"
    if not isinstance(spec, dict):
        errors.append((line, f"{where} must be a mapping"))
        return None
    for key in spec:
        if key not in _TABLE_KEYS:
            errors.append((_line(spec, key), f"{where}: unknown key `{key}`"))
    key = _parse_key(where, spec, errors)
    identity_columns = _parse_identity(where, spec, errors)
    references = _parse_references(where, spec, errors)
    erase = spec.get("erase", "update")
    if erase not in TABLE_ACTIONS:
        errors.append((_line(spec, "erase"),
                       f"{where}: erase must be one of {', '.join(TABLE_ACTIONS)}, not `{erase}`"))
    columns = _parse_columns(where, spec, errors)
    retains = erase == "retain" or (erase == "update" and any(
        c.erase == "retain" for c in columns.values()))
    basis = str(spec.get("legal_basis") or "").strip()
    if retains and not basis:
        errors.append((line, f"{where}: retaining data needs a `legal_basis`"))
    disclosures = _parse_disclosures(where, spec, errors)
    collected_at = _parse_collected_at(where, spec, identity_columns, errors)
    if key is None:
        return None
    identity = {}
    for field_name, column in identity_columns:
        identity.setdefault(field_name, column)
    return Table(name, key, identity, tuple(references), columns, erase, basis,
                 disclosures, collected_at, tuple(identity_columns))


def _parse_key(where, spec, errors) -> tuple | None:
    """`primary_key: id`, `primary_key: [order_id, line]` (composite), or nothing:
    the database's own key is read when the table is reflected."""
    pk = spec.get("primary_key")
    if pk is None:
        return ()
    names = [pk] if isinstance(pk, str) else pk
    if not isinstance(names, list) or not names or not all(
            isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        errors.append((_line(spec, "primary_key"), f"{where}: `primary_key` must name a "
                       "column or list the columns of a composite key"))
        return None
    return tuple(names)


def _parse_identity(where, spec, errors) -> list[tuple[str, str]]:
    """[(identity field, column)]: `identity: {email: [email, alt_email], phone: tel,
    loyalty_id: card_no}`; field names other than the portal's are custom types."""
    identity = spec.get("identity") or {}
    if not isinstance(identity, dict):
        errors.append((_line(spec, "identity"), f"{where}: `identity` must be a mapping"))
        return []
    pairs = []
    for field_name, columns in identity.items():
        if not isinstance(field_name, str) or not _IDENTITY_NAME.match(field_name):
            errors.append((_line(identity, field_name),
                           f"{where}: identity field `{field_name}` must be a lower-case "
                           "name (email, phone, account_number, or one of your own)"))
            continue
        columns = [columns] if isinstance(columns, str) else columns
        if not isinstance(columns, list) or not columns or not all(
                isinstance(c, str) and c for c in columns):
            errors.append((_line(identity, field_name),
                           f"{where}: identity field `{field_name}` must name a column "
                           "or a list of columns"))
            continue
        pairs.extend((field_name, c) for c in columns)
    return pairs


def _parse_references(where, spec, errors) -> list[Reference]:
    references = []
    for ref in spec.get("references") or []:
        target = ref.get("to", "") if isinstance(ref, dict) else ""
        if not isinstance(ref, dict) or not ref.get("column") or target.count(".") != 1:
            errors.append((_line(ref) or _line(spec, "references"),
                           f"{where}: a reference needs `column` and `to: table.column`"))
            continue
        to_table, to_column = target.split(".")
        direction = ref.get("direction") or ""
        if direction not in ("", "from", "to"):
            errors.append((_line(ref, "direction"), f"{where}: a reference's `direction` is "
                           f"`from` or `to`, not `{direction}`"))
            continue
        references.append(Reference(str(ref["column"]), to_table, to_column, direction))
    return references


def _parse_columns(where, spec, errors) -> dict[str, Column]:
    columns = {}
    raw_columns = spec.get("columns") or {}
    if not isinstance(raw_columns, dict):
        errors.append((_line(spec, "columns"), f"{where}: `columns` must be a mapping"))
        raw_columns = {}
    for col, value in raw_columns.items():
        column = _parse_column(where, col, value, _line(raw_columns, col), errors)
        if column is not None:
            columns[column.name] = column
    return columns


def _parse_column(where, col, value, col_line, errors) -> Column | None:
    if isinstance(value, str):
        category, action = value, "null"
    elif isinstance(value, dict):
        category, action = value.get("category"), value.get("erase", "null")
        action = "null" if action is None else action  # YAML reads `null` as None
    else:
        errors.append((col_line, f"{where}: column `{col}` needs a category"))
        return None
    if not isinstance(category, str) or not is_category(category):
        errors.append((col_line, f"{where}: column `{col}`: `{category}` is not a "
                                 "data category of the fideslang taxonomy"))
    if action not in COLUMN_ACTIONS:
        errors.append((col_line, f"{where}: column `{col}`: erase must be one of "
                                 f"{', '.join(COLUMN_ACTIONS)}, not `{action}`"))
    return Column(str(col), category, action)


def _parse_collected_at(where, spec, identity, errors) -> str:
    collected_at = spec.get("collected_at") or ""
    if not isinstance(collected_at, str):
        errors.append((_line(spec, "collected_at"),
                       f"{where}: `collected_at` must name the column of the collection time"))
        return ""
    if collected_at and identity:
        errors.append((_line(spec, "collected_at"),
                       f"{where}: `collected_at` is for tables of dated records (orders, "
                       "messages), not for an identity table: its rows are the person"))
        return ""
    return collected_at


def _parse_disclosures(where, spec, errors) -> dict | None:
    raw = spec.get("disclosures")
    if raw is None:
        return None
    line = _line(spec, "disclosures")
    if not isinstance(raw, dict):
        errors.append((line, f"{where}: `disclosures` must map third_party, at, categories, "
                             "purpose to columns"))
        return None
    for key in raw:
        if key not in DISCLOSURE_KEYS:
            errors.append((_line(raw, key), f"{where}: disclosures: unknown key `{key}` "
                                            f"(expected {', '.join(DISCLOSURE_KEYS)})"))
    for key, required in DISCLOSURE_KEYS.items():
        if required and not raw.get(key):
            errors.append((line, f"{where}: disclosures: `{key}` (a column name) is required"))
    return {k: str(v) for k, v in raw.items() if k in DISCLOSURE_KEYS and v}


def _check_references(tables, raw, errors):
    for table in tables.values():
        for ref in table.references:
            if ref.to_table not in tables:
                errors.append((_line(raw[table.name], "references"),
                               f"table `{table.name}`: reference to `{ref.to_table}`, "
                               "which is not in the map"))
    for table in tables.values():
        if table.disclosures is not None and not table.primary_key:
            errors.append((_line(raw[table.name], "disclosures"),
                           f"table `{table.name}`: a disclosure table needs a one-column "
                           "`primary_key` (the scan's cursor)"))
        elif table.disclosures is not None and not disclosure_path(tables, table):
            errors.append((_line(raw[table.name], "disclosures"),
                           f"table `{table.name}`: a disclosure table needs an `email` identity "
                           "column or a reference to a table that has one"))
    roots = [t for t in tables.values() if t.identity]
    if not roots:
        errors.append((None, "no table has `identity` columns: nobody could be found"))
        return
    neighbours = defaultdict(set)
    for table in tables.values():
        for ref in table.references:
            neighbours[table.name].add(ref.to_table)
            neighbours[ref.to_table].add(table.name)
    reached, todo = set(), [t.name for t in roots]
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo.extend(neighbours[name])
    for name in tables:
        if name not in reached:
            errors.append((_line(raw, name), f"table `{name}` cannot be reached from an "
                                             "identity table through references"))


def disclosure_path(tables: dict, table: Table) -> tuple[str, str, str, str] | None:
    """How to reach the person's email from a disclosure row: (own column, table,
    its key column, its email column); the table is the disclosure table itself
    when it holds the email."""
    if "email" in table.identity:
        return (table.primary_key, table.name, table.primary_key, table.identity["email"])
    for ref in table.references:
        target = tables.get(ref.to_table)
        if target is not None and "email" in target.identity:
            return (ref.column, target.name, ref.to_column, target.identity["email"])
    return None
