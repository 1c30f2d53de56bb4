"""Manual sources: a person (the source's owner) acts by hand.

The run waits in the owner's task list in the staff area (/staff/tasks/), where
they upload the records they found (CSV or JSON) or confirm that the deletion,
correction or opt-out is done, or impossible and why. They are emailed when a
task arrives and reminded while it waits.
"""

import csv
import io
import json

from requests_app.sources.base import Connector, Outcome, SourceError

MAX_UPLOAD = 20 * 1024 * 1024


class ManualConnector(Connector):
    kind, access, erasure, changes, needs_owner = "manual", True, True, True, True

    def gather(self, run, identity, sink) -> Outcome:
        return Outcome(waiting=True)

    def plan_erasure(self, run, identity) -> Outcome:
        # Nothing to look at before approval: the owner deletes by hand afterwards
        # (one task for them, not two), confirming it done or saying why it is not.
        return Outcome(result={"manual": True,
                               "action": f"the owner of {self.source.name} deletes by hand"})

    def erase(self, run, identity, plan, on_batch=None) -> Outcome:
        return Outcome(waiting=True)

    def apply_change(self, run, identity, change) -> Outcome:
        return Outcome(waiting=True)


def parse_upload(name: str, data: bytes) -> list[dict]:
    """Records from an uploaded CSV (a header row, then one record a row) or JSON
    (a list of objects). Raises SourceError with a message for the owner."""
    if len(data) > MAX_UPLOAD:
        raise SourceError("The file is larger than 20 MB.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SourceError("The file is not UTF-8 text.") from None
    if name.lower().endswith(".json"):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SourceError(f"The JSON is not valid (line {exc.lineno}).") from None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise SourceError("The JSON must be a list of objects, one per record.")
        return records
    if name.lower().endswith(".csv"):
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames:
            raise SourceError("The CSV has no header row.")
        return [dict(row) for row in reader]
    raise SourceError("Upload a .csv or a .json file.")
