"""A Fides dataset (YAML) turned into a dataset map to review and save, with the
list of everything in it the map cannot say, in words naming the file, the
collection and the field. Nothing is dropped silently: every key of the dataset,
its collections and fields is mapped, known to carry no meaning for fulfilment
(a name, a description, a `data_type` the database reports anyway), or reported.

What is mapped (`fides_meta` and its old name `fidesops_meta` alike):
- `primary_key` fields become the key (several: a composite key). A collection
  whose fields mark no key gets none: the database's own primary key or unique
  constraint is read when the source is saved, and a table with neither is
  refused then; no field is ever taken as the key by guess.
- `identity` fields become identity columns, several of one type included (email
  and alt_email); Fides' `phone_number` is the portal's `phone`, and types of the
  office's own (a loyalty id) keep their name.
- `references` within the dataset become references, with their `direction`.
- a field's data category becomes its column's (the withheld one when it has
  several); key and link columns are columns only when their category is personal
  (`user.*`), and then kept on erasure: system data (`system.operations`) on a key
  or a link is never set to NULL, so the first map is safe to save.
- `read_only` fields are kept on erasure; `masking_strategy_override` becomes the
  column's erase action (`null_rewrite`: null; `hash`, `hmac`, the rewrites: a
  keyed hash) and, on a collection, `delete` deletes its rows.
- `skip_processing` collections are left out (reported).
"""

from dataclasses import dataclass, field

import yaml

from requests_app.rules import withheld_anywhere
from requests_app.sources.categories import is_category
from requests_app.sources.datamap import _IDENTITY_NAME, DatasetMapError, parse

META_KEYS = ("fides_meta", "fidesops_meta")
# Fides' identity names for the portal's identity fields; any other name is kept.
_FIDES_IDENTITIES = {"email": "email", "phone_number": "phone", "phone": "phone",
                     "account_number": "account_number"}
# Keys that describe and change nothing a request does.
_DESCRIPTIVE = {"name", "description", "data_qualifier", "retention", "tags", "meta",
                "organization_fides_key", "fides_key", "joint_controller",
                "third_country_transfers", "data_categories"}
_DATASET_KEYS = _DESCRIPTIVE | {"collections", *META_KEYS}
_COLLECTION_KEYS = _DESCRIPTIVE | {"fields", *META_KEYS}
_FIELD_KEYS = _DESCRIPTIVE | {"fields", *META_KEYS}
# A field's fides_meta: mapped, or (data_type, length) read from the database anyway.
_FIELD_META = {"primary_key", "identity", "references", "data_type", "length", "read_only",
               "masking_strategy_override", "return_all_elements"}
_STRATEGIES = {"null_rewrite": "null", "hash": "hash", "hmac": "hash",
               "string_rewrite": "hash", "random_string_rewrite": "hash"}
_KEPT = {"links": "key and link columns holding personal data are kept so that rows "
                  "stay linked",
         "read_only": "fields Fides marks read_only are kept"}


@dataclass
class Imported:
    """A map to review (YAML text) and what of the dataset it could not carry over."""

    dataset: str
    map_text: str
    unsupported: list = field(default_factory=list)


class _Report:
    def __init__(self, file: str, dataset: str):
        self.file, self.dataset, self.items = file, dataset, []

    def add(self, collection: str | None, fld: str | None, what: str) -> None:
        where = [self.file, f"dataset `{self.dataset}`"]
        if collection is not None:
            where.append(f"collection `{collection}`")
        if fld is not None:
            where.append(f"field `{fld}`")
        self.items.append(f"{', '.join(where)}: {what}")


def from_fides(text: str) -> str:
    """Convert a Fides dataset YAML into a dataset map (YAML text)."""
    return import_fides(text).map_text


def import_fides(text: str, file: str = "the dataset", dataset: str | None = None) -> Imported:
    """Convert one dataset of a Fides YAML file (the first, or the one named) into a
    map; raise DatasetMapError, naming the file, when there is no map to make."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or exc
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark else ""
        raise DatasetMapError([(None, f"{file} is not valid YAML{at}: {problem}")]) from None
    datasets = doc.get("dataset") if isinstance(doc, dict) else None
    if not isinstance(datasets, list) or not datasets or not all(
            isinstance(d, dict) for d in datasets):
        raise DatasetMapError([(None, f"{file} is not a Fides dataset: no `dataset:` list")])
    chosen = _choose(datasets, file, dataset)
    report = _Report(file, str(chosen.get("fides_key", "")))
    for other in datasets:
        if other is not chosen:
            report.add(None, None, f"another dataset in the file, `{other.get('fides_key')}`, "
                                   "is not in this map: import it for its own source "
                                   f"(--dataset {other.get('fides_key')})")
    builders = _dataset(chosen, report)
    for builder in builders.values():  # a referenced field is a link too: never nulled
        for ref in builder.references:
            target, column = ref["to"].split(".")
            if target in builders:
                builders[target].as_link(column)
    tables = {name: builder.table() for name, builder in builders.items()}
    if not any(t.get("identity") for t in tables.values()):
        nobody = (f"{file}, dataset `{report.dataset}`: no collection has an identity field "
                  "of this dataset: nobody could be found")
        raise DatasetMapError([(None, nobody)] + [(None, item) for item in report.items])
    leave_out_unreachable(tables, report)
    body = yaml.safe_dump({"name": report.dataset, "tables": tables}, sort_keys=False)
    notes = "".join(f"#   - {item}\n" for item in report.items)
    header = ("# Imported from Fides: review before saving.\n"
              + (f"# Not carried over ({len(report.items)}):\n{notes}" if notes else ""))
    parse(header + body)  # what we produce must be valid
    return Imported(report.dataset, header + body, report.items)


def _choose(datasets: list, file: str, wanted: str | None) -> dict:
    if wanted is None:
        return datasets[0]
    for candidate in datasets:
        if candidate.get("fides_key") == wanted:
            return candidate
    keys = ", ".join(str(d.get("fides_key")) for d in datasets)
    raise DatasetMapError([(None, f"{file} has no dataset `{wanted}` (it has: {keys})")])


def _meta(spec: dict, report: _Report, collection, fld) -> dict:
    """fides_meta and its old name fidesops_meta, merged; {} when neither."""
    merged = {}
    for key in META_KEYS:
        value = spec.get(key)
        if isinstance(value, dict):
            merged.update(value)
        elif value is not None:
            report.add(collection, fld, f"`{key}` is not a mapping: ignored")
    return merged


def _unknown(spec: dict, known: set, report: _Report, collection, fld, what="key") -> None:
    for key in spec:
        if key not in known:
            report.add(collection, fld, f"{what} `{key}` is not one the importer knows: "
                                        "not carried over")


def _dataset(dataset: dict, report: _Report) -> dict:
    _unknown(dataset, _DATASET_KEYS, report, None, None)
    meta = _meta(dataset, report, None, None)
    if meta.get("namespace"):
        report.add(None, None, f"namespace {_words(meta['namespace'])}: the map has no "
                               "database or schema name; the source's DSN chooses them")
    _unknown(meta, {"namespace"}, report, None, None, "fides_meta key")
    if dataset.get("data_categories"):
        report.add(None, None, f"dataset-level data categories ({_words(dataset['data_categories'])})"
                               ": the map holds categories per column only")
    tables = {}
    collections = dataset.get("collections") or []
    if not isinstance(collections, list):
        report.add(None, None, "`collections` is not a list: nothing imported")
        collections = []
    for collection in collections:
        name = collection.get("name") if isinstance(collection, dict) else None
        if not isinstance(name, str) or not name:
            report.add(None, None, "a collection without a `name`: left out")
        elif name in tables:
            report.add(name, None, "a second collection of this name: left out")
        else:
            table = _collection(collection, name, report)  # a _Table builder
            if table is not None:
                tables[name] = table
    return tables


def _words(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _collection(collection: dict, name: str, report: _Report) -> "_Table | None":
    """One collection as a table of the map, or None when it is left out."""
    _unknown(collection, _COLLECTION_KEYS, report, name, None)
    meta = _meta(collection, report, name, None)
    if meta.get("skip_processing"):
        report.add(name, None, "`skip_processing`: left out of the map, as Fides skips it")
        return None
    builder = _Table(name, report)
    _collection_meta(meta, builder)
    if collection.get("data_categories"):
        report.add(name, None, f"collection-level data categories "
                               f"({_words(collection['data_categories'])}): not given to its "
                               "fields; the map holds categories per column")
    fields = collection.get("fields") or []
    if not isinstance(fields, list):
        report.add(name, None, "`fields` is not a list: no field imported")
        fields = []
    for fld in fields:
        if not isinstance(fld, dict) or not isinstance(fld.get("name"), str):
            report.add(name, None, "a field without a `name`: left out")
            continue
        builder.add_field(fld)
    return builder


def _collection_meta(meta: dict, builder: "_Table") -> None:
    name, report = builder.name, builder.report
    for key, value in meta.items():
        if key == "masking_strategy_override":
            strategy = value.get("strategy") if isinstance(value, dict) else value
            if strategy == "delete":
                builder.erase = "delete"
            else:
                report.add(name, None, f"masking_strategy_override `{strategy}` on the "
                                       "collection is not one the engine has: its rows are "
                                       "updated column by column")
        elif key == "after":
            report.add(name, None, f"`after` ({_words(value)}): the engine orders its "
                                   "queries by references; this order is not kept")
        elif key == "erase_after":
            report.add(name, None, f"`erase_after` ({_words(value)}): the engine orders "
                                   "erasure by references and the database's foreign keys; "
                                   "this order is not kept")
        elif key == "partitioning":
            report.add(name, None, "`partitioning`: the table is read whole, not partition "
                                   "by partition")
        elif key != "skip_processing":
            report.add(name, None, f"fides_meta key `{key}` is not one the importer "
                                   "knows: not carried over")


class _Table:
    """A table of the map, built field by field."""

    def __init__(self, name: str, report: _Report):
        self.name, self.report = name, report
        self.key, self.identity, self.references, self.columns = [], {}, [], {}
        self.erase, self.kept = "update", []

    def add_field(self, fld: dict) -> None:
        name, report = fld["name"], self.report
        _unknown(fld, _FIELD_KEYS, report, self.name, name)
        meta = _meta(fld, report, self.name, name)
        if isinstance(fld.get("fields"), list) and fld["fields"]:
            report.add(self.name, name, f"nested fields ({_nested(fld['fields'])}): the "
                                        "map's columns are flat; not carried over (add "
                                        f"`{name}` by hand if it is one column)")
            return
        _unknown(meta, _FIELD_META | {"custom_request_field"}, report, self.name, name,
                 "fides_meta key")
        if meta.get("custom_request_field"):
            report.add(self.name, name, f"custom_request_field "
                                        f"`{meta['custom_request_field']}`: requests carry "
                                        "no such field; not carried over")
        if meta.get("primary_key"):
            self.key.append(name)
        self._identity(name, meta)
        declared = _list(meta, "references")
        self.references += [r for r in (self._reference(name, ref, meta) for ref in declared)
                            if r]
        category = _category(fld.get("data_categories") or [], report, self.name, name)
        if category:  # a link to another dataset is a link too: never nulled
            self._column(name, category, meta, bool(declared) or bool(meta.get("primary_key")))

    def _identity(self, name: str, meta: dict) -> None:
        fides_type = meta.get("identity")
        if not fides_type:
            return
        kind = _FIDES_IDENTITIES.get(str(fides_type), str(fides_type))
        if str(meta.get("data_type", "")).endswith("[]"):
            self.report.add(self.name, name, f"identity `{fides_type}` on an array "
                                             "field: lookups compare whole values; not used")
        elif not _IDENTITY_NAME.match(kind):
            self.report.add(self.name, name, f"identity `{fides_type}` is not a lower-case "
                                             "name the map takes; not used")
        else:
            self.identity.setdefault(kind, []).append(name)

    def _reference(self, name: str, ref, meta: dict) -> dict | None:
        target = ref.get("field") if isinstance(ref, dict) else None
        dataset = ref.get("dataset", self.report.dataset) if isinstance(ref, dict) else None
        if not isinstance(target, str):
            self.report.add(self.name, name, "a reference without a `field`: not carried over")
            return None
        if str(meta.get("data_type", "")).endswith("[]"):
            self.report.add(self.name, name, f"reference to `{target}` from an array "
                                             "field: lookups compare whole values; not followed")
            return None
        if dataset != self.report.dataset:
            self.report.add(self.name, name, f"reference to `{dataset}.{target}`, another "
                                             "dataset: a map is one database; not followed")
            return None
        if target.count(".") != 1:
            self.report.add(self.name, name, f"reference to `{target}`, a nested field: "
                                             "not followed")
            return None
        out = {"column": name, "to": target}
        if ref.get("direction") in ("from", "to"):
            out["direction"] = ref["direction"]
        elif ref.get("direction") is not None:
            self.report.add(self.name, name, f"reference to `{target}`: direction "
                                             f"`{ref['direction']}` is neither from nor to; "
                                             "followed both ways")
        return out

    def _column(self, name: str, category: str, meta: dict, key_or_link: bool) -> None:
        if key_or_link:
            self.columns[name] = category
            self.as_link(name)
            return
        if meta.get("read_only"):
            self.columns[name] = {"category": category, "erase": "retain"}
            self._keep("read_only")
            return
        action = _strategy(meta.get("masking_strategy_override"), self, name)
        self.columns[name] = category if action == "null" else {"category": category,
                                                                "erase": action}

    def as_link(self, name: str) -> None:
        """A key or a link set to NULL breaks the row or its links: a column of
        system data there leaves the map, one of personal data is kept."""
        column = self.columns.get(name)
        if column is None:
            return
        category = column if isinstance(column, str) else column["category"]
        if category.startswith("user"):
            self.columns[name] = {"category": category, "erase": "retain"}
            self._keep("links")
        else:
            del self.columns[name]

    def _keep(self, why: str) -> None:
        if why not in self.kept:
            self.kept.append(why)

    def table(self) -> dict:
        table: dict = {}
        if self.key:
            table["primary_key"] = self.key[0] if len(self.key) == 1 else self.key
        if self.identity:
            table["identity"] = {f: cols[0] if len(cols) == 1 else cols
                                 for f, cols in self.identity.items()}
        if self.references:
            table["references"] = self.references
        table["columns"] = self.columns
        table["erase"] = self.erase
        if self.kept:
            table["legal_basis"] = ("Imported from Fides: " + "; ".join(
                _KEPT[k] for k in self.kept) + ". Review before saving.")
        return table


def _list(meta: dict, key: str) -> list:
    value = meta.get(key) or []
    return value if isinstance(value, list) else [value]


def _nested(fields: list) -> str:
    """The nested fields by name, with what of them matters: `a (identity email)`."""
    names = []
    for sub in fields:
        if not isinstance(sub, dict):
            continue
        meta = {**(sub.get("fidesops_meta") or {}), **(sub.get("fides_meta") or {})}
        notes = [f"identity {meta['identity']}"] if meta.get("identity") else []
        if meta.get("references") or sub.get("references"):
            notes.append("a reference")
        name = str(sub.get("name"))
        if sub.get("fields"):
            name += f".{{{_nested(sub['fields'])}}}"
        names.append(name + (f" ({', '.join(notes)})" if notes else ""))
    return ", ".join(names)


def _category(categories, report: _Report, collection: str, fld: str) -> str | None:
    """The column's one category: the withheld one among several, else the first."""
    categories = categories if isinstance(categories, list) else [categories]
    known = [c for c in categories if isinstance(c, str) and is_category(c)]
    for bad in (c for c in categories if c not in known):
        report.add(collection, fld, f"`{bad}` is not a data category of the fideslang "
                                    "taxonomy: not carried over")
    if not known:
        return None
    chosen = next((c for c in known if withheld_anywhere(c)), known[0])
    if len(known) > 1:
        report.add(collection, fld, f"several data categories ({', '.join(known)}): a "
                                    f"column holds one, `{chosen}`")
    return chosen


def _strategy(override, table: _Table, fld: str) -> str:
    """The erase action of a field's masking_strategy_override (null without one)."""
    if override is None:
        return "null"
    strategy = override.get("strategy") if isinstance(override, dict) else override
    action = _STRATEGIES.get(strategy)
    config = override.get("configuration") if isinstance(override, dict) else None
    if action is None:
        table.report.add(table.name, fld, f"masking_strategy_override `{strategy}` is not "
                                          "one the engine has: the column is set to NULL")
        return "null"
    if strategy in ("string_rewrite", "random_string_rewrite") or (
            config and strategy != "null_rewrite"):
        table.report.add(table.name, fld, f"masking_strategy_override `{strategy}`: "
                                          "replaced by a keyed hash"
                                          + (f"; its configuration ({_words(config)}) is not "
                                             "applied" if config else ""))
    return action


def leave_out_unreachable(tables: dict, report: _Report) -> None:
    """Drop references to collections not in the map, then the collections no
    reference leads to from one with an identity field: nobody's rows could be
    found there, and a map with such a table is refused."""
    for name, table in tables.items():
        kept = []
        for ref in table.get("references", []):
            if ref["to"].split(".")[0] in tables:
                kept.append(ref)
            else:
                report.add(name, ref["column"], f"reference to `{ref['to']}`, which is not a "
                                                "collection of the map: not followed")
        if kept:
            table["references"] = kept
        else:
            table.pop("references", None)
    neighbours = {name: set() for name in tables}
    for name, table in tables.items():
        for ref in table.get("references", []):
            neighbours[name].add(ref["to"].split(".")[0])
            neighbours[ref["to"].split(".")[0]].add(name)
    reached, todo = set(), [n for n, t in tables.items() if t.get("identity")]
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo.extend(neighbours[name])
    for name in [n for n in tables if n not in reached]:
        del tables[name]
        report.add(name, None, "no identity field, and no reference within the dataset "
                               "leads to it from a collection that has one: left out")
