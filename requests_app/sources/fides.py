"""A Fides dataset (YAML) turned into a dataset map to review and save.

Identity fields (fides_meta.identity) become identity columns, several of one
type included (email and alt_email), and identity types of the office's own (a
loyalty id) keep their name; fides_meta.references become references;
fides_meta.primary_key fields become the key (several: a composite key). A
collection whose fields mark no key gets none in the map: the database's own
primary key or unique constraint is read when the source is saved, and a table
with neither is refused then; no field is ever taken as the key by guess.

Every field's first data category becomes its column's; key and link columns
are included only when their category is personal (`user.*`), and then kept as
they are on erasure (setting a key or a NOT NULL link to NULL breaks the row).
"""

import yaml

from requests_app.sources.datamap import DatasetMapError, parse

# Fides' identity names for the portal's identity fields; any other name is kept.
_FIDES_IDENTITIES = {"email": "email", "phone_number": "phone", "phone": "phone",
                     "account_number": "account_number"}
_KEPT_KEYS = ("Imported from Fides: key and link columns are kept so that rows stay "
              "linked; review before saving")


def from_fides(text: str) -> str:
    """Convert a Fides dataset YAML into a dataset map (YAML text)."""
    doc = yaml.safe_load(text) or {}
    datasets = doc.get("dataset") if isinstance(doc, dict) else None
    if not datasets:
        raise DatasetMapError([(None, "not a Fides dataset: no `dataset:` list")])
    dataset = datasets[0]
    tables = {}
    for collection in dataset.get("collections") or []:
        tables[collection["name"]] = _collection(collection, dataset.get("fides_key"))
    text_out = yaml.safe_dump({"name": dataset.get("fides_key", ""), "tables": tables},
                              sort_keys=False)
    parse(text_out)  # what we produce must be valid
    return text_out


def _identity_name(fides_name: str) -> str:
    return _FIDES_IDENTITIES.get(fides_name, fides_name)


def _collection(collection: dict, fides_key) -> dict:
    """One collection as a table of the map."""
    key, identity, references, columns = [], {}, [], {}
    kept_links = False
    for fld in collection.get("fields") or []:
        meta = fld.get("fides_meta") or {}
        name = fld["name"]
        if meta.get("primary_key"):
            key.append(name)
        if meta.get("identity"):
            identity.setdefault(_identity_name(str(meta["identity"])), []).append(name)
        refs = [r for r in meta.get("references") or []
                if r.get("dataset", fides_key) == fides_key]
        references += [{"column": name, "to": r["field"]} for r in refs]
        cats = fld.get("data_categories") or []
        if not cats:
            continue
        if meta.get("primary_key") or refs:
            if cats[0].startswith("user."):  # personal: in the package, never nulled
                columns[name] = {"category": cats[0], "erase": "retain"}
                kept_links = True
            continue
        columns[name] = cats[0]
    table: dict = {}
    if key:
        table["primary_key"] = key[0] if len(key) == 1 else key
    if identity:
        table["identity"] = {f: cols[0] if len(cols) == 1 else cols
                             for f, cols in identity.items()}
    if references:
        table["references"] = references
    table["columns"] = columns
    table["erase"] = "update"
    if kept_links:
        table["legal_basis"] = _KEPT_KEYS
    return table
