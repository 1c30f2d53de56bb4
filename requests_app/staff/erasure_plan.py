"""The deletion dry run as the desk shows it beside the approval: per source, and per
table, what erasure would do, read from each dry-run run's result.

A result's shape belongs to its connector (and grows: an SQL dry run says per
table the rows, the action, what is kept and why, shared rows, columns...), so it
is read generically: the keys the desk knows get their own column, every other key
is shown as it is, by name, in words. Results hold counts and names only, never
personal values (sources/base.py), but a value is still cut short for the page.
"""

from requests_app.models import SourceRun

# Keys of a table's entry shown in their own column, with the names they may have.
COLUMNS = {
    "action": ("action",),
    "rows": ("rows", "count"),
    "kept": ("kept", "kept_shared", "retain"),
    "legal_basis": ("legal_basis",),
    "shared": ("shared",),
}
LONGEST = 300


def erasure_plan(runs: list[SourceRun]) -> list[dict]:
    """Per source of the dry run: {"run", "tables": [per table: table, action, rows,
    kept, legal_basis, shared, details], "summary": details of the source as a
    whole (an HTTP service's counts, a manual owner's task)}."""
    plan = []
    for run in runs:
        if run.action != SourceRun.Action.PLAN_ERASURE:
            continue
        result = run.result if isinstance(run.result, dict) else {}
        tables = result.get("tables")
        rows = ([_table(name, entry) for name, entry in tables.items()]
                if isinstance(tables, dict) else [])
        summary = {k: v for k, v in result.items()
                   if not (k == "tables" and isinstance(tables, dict))}
        plan.append({"run": run, "tables": rows, "summary": _details(summary)})
    return plan


def _table(name: str, entry) -> dict:
    if not isinstance(entry, dict):
        return {"table": name, "rows": _words(entry), "details": []}
    row = {"table": name}
    known = set()
    for column, keys in COLUMNS.items():
        key = next((k for k in keys if k in entry), None)
        row[column] = _words(entry[key]) if key else ""
        if key:
            known.add(key)
    row["details"] = _details({k: v for k, v in entry.items() if k not in known})
    return row


def _details(values: dict) -> list[tuple[str, str]]:
    """(name in words, value in words) for each key, in the order given."""
    return [(str(key).replace("_", " "), _words(value)) for key, value in values.items()]


def _words(value) -> str:
    if isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, dict):
        text = ", ".join(f"{k}: {_words(v)}" for k, v in value.items())
    elif isinstance(value, (list, tuple, set)):
        text = ", ".join(_words(v) for v in value)
    elif value is None:
        text = ""
    else:
        text = str(value)
    return text if len(text) <= LONGEST else text[:LONGEST - 1] + "…"
