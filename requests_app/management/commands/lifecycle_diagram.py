"""Write docs/lifecycle.md from the state machine itself: a Mermaid diagram and a
table of every transition, so the documentation cannot drift from the code.

    make lifecycle-diagram      (or: python manage.py lifecycle_diagram --write docs/lifecycle.md)
"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from requests_app.models import PrivacyRequest, State
from requests_app.models.privacy_request import FINAL_STATES, OPEN_STATES
from requests_app.rules import JURISDICTIONS

HEADER = """# Request lifecycle

Generated from the state machine in `requests_app/models/privacy_request.py` by
`make lifecycle-diagram`; do not edit by hand (a test fails when this file and
the machine disagree).

Every step is taken through `requests_app.services.requests.lifecycle.do_transition`,
which locks the request row, checks who may take the step, applies it, and in
the same transaction writes an audit event (actor, from, to, reason, time). Its
side effects (emails to the consumer, the system's next step) are sent to the
Celery workers only after the transaction commits. The deadline runs from
receipt and never pauses; the extension (`extend`) is the one step that keeps
the state and moves the due date instead.
"""


def _transitions():
    seen = {}
    for t in PrivacyRequest(state=State.PENDING_VERIFICATION).get_all_state_transitions():
        seen.setdefault(t.name, []).append(t)
    return seen


def _who(t) -> str:
    if callable(t.permission):
        perm = (t.permission.__doc__ or t.permission.__name__).strip()
    else:
        perm = f"`{t.permission.split('.')[-1]}`" if t.permission else ""
    return ", ".join(
        f"staff with {perm}" if actor == "staff" else str(actor)
        for actor in t.custom.get("actors", ())
    )


def render() -> str:
    labels = dict(State.choices)
    lines = ["```mermaid", "stateDiagram-v2"]
    for value, label in State.choices:
        lines.append(f"    {value} : {label}")
    lines.append(f"    [*] --> {State.PENDING_VERIFICATION}")
    for name, transitions in _transitions().items():
        for t in transitions:
            if t.target is None:
                continue
            lines.append(f"    {t.source} --> {t.target} : {name}")
    for state in FINAL_STATES:
        lines.append(f"    {state} --> [*]")
    lines.append("```")

    table = [
        "| step | from | to | who may take it | guards | email to the consumer | then |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, transitions in _transitions().items():
        t = transitions[0]
        sources = ", ".join(sorted(str(labels[x.source]) for x in transitions))
        target = labels[t.target] if t.target else "(same state)"
        guards = "; ".join((c.__doc__ or c.__name__).strip() for c in t.conditions) or "none"
        notice = f"`{t.custom['notice']}`" if t.custom.get("notice") else ""
        then = f"`{t.custom['follow_up'].rsplit('.', 1)[-1]}`" if t.custom.get("follow_up") else ""
        table.append(f"| `{name}` | {sources} | {target} | {_who(t)} | {guards} | {notice} "
                     f"| {then} |")
    return "\n".join([HEADER, *lines, "", "## Steps", "", *table, "", *_deadlines(), ""])


def _deadlines() -> list[str]:
    def show(period):
        return str(period) if period else "none"

    rows = [
        "## Deadlines",
        "",
        "From `requests_app/rules/`, the one table to change when the law does. Dates",
        "count from the day of receipt in `TIME_ZONE`; business days skip weekends, the",
        "days that are public holidays in every calendar the jurisdiction names (below)",
        "and the office's closures (`OFFICE_CLOSURES`); an unknown jurisdiction gets the",
        "earliest date any row gives.",
        "",
        "| jurisdiction | acknowledge | respond | extension | opt-out | appeal decided | sources |",
        "|---|---|---|---|---|---|---|",
    ]
    for j in JURISDICTIONS.values():
        rows.append(
            f"| {j.label} | {show(j.acknowledge)} | {show(j.respond)} | +{show(j.extension)} "
            f"| {show(j.opt_out)} | {show(j.appeal)} | {'; '.join(j.citations)} |"
        )
    return rows + ["", *_calendars(), "", *_open_work(), "", *_closing()]


def _closing() -> list[str]:
    return [
        "## Closing by itself",
        "",
        "An answered request (completed, denied, or its appeal denied) that has not",
        "changed for `AUTO_CLOSE_QUIET_DAYS` and has no download link still live closes",
        "by itself: the daily task `close_quiet_requests` takes the system step",
        "`close_quietly` (audited, on the consumer's timeline; taken twice, it closes",
        "once). An appeal keeps the request open, as a live link does. Retention and the",
        "purge of verification data count from the closing; a closed request can still",
        "be appealed where the jurisdiction has an appeal.",
    ]


def _calendars() -> list[str]:
    rows = [
        "## Business-day calendars",
        "",
        "Which holidays a business day skips is a matter of reading (California's",
        "regulations speak of state holidays; a reader may take the federal ones). Each",
        "jurisdiction names every calendar of the `holidays` package that could apply,",
        "and a day is skipped only when it is a holiday in every one of them: no",
        "reasonable reading gives an earlier date. A California-only holiday (Cesar",
        "Chavez Day, the day after Thanksgiving) is a business day unless the office",
        "closes on it (`OFFICE_CLOSURES`, e.g. `US-CA`); a federal holiday California",
        "keeps too (Thanksgiving) is skipped.",
        "",
        "| jurisdiction | a day is skipped when it is a holiday in |",
        "|---|---|",
    ]
    rows += [f"| {j.label} | {j.calendars.label} |" for j in JURISDICTIONS.values()]
    return rows


def _open_work() -> list[str]:
    labels = dict(State.choices)
    return [
        "## Open work and its due date",
        "",
        "Open states (in the staff queue and its filters, the dashboard, the overdue",
        "counts and the reminders): " + ", ".join(str(labels[s]) for s in OPEN_STATES) + ".",
        "",
        "| the request | is due on |",
        "|---|---|",
        "| not appealed | the response date, or the extended one once extended |",
        "| under appeal | the appeal's decision date (appeal decided, from the appeal's "
        "receipt) |",
        "| appeal granted | the same decision date: the work it reopens is due by then; "
        "no extension |",
        "",
        "A granted appeal does not erase the denial it overturned: the denial stays in "
        "the request log, and the metrics count it as it happened (its reason, its date "
        "of response); later answers do not move the date of the first response.",
    ]


class Command(BaseCommand):
    help = "Print (or --write) the lifecycle diagram generated from the state machine."

    def add_arguments(self, parser):
        parser.add_argument("--write", metavar="PATH", help="write to this file")
        parser.add_argument("--check", metavar="PATH",
                            help="exit 1 if this file differs from what would be generated")

    def handle(self, *args, write=None, check=None, **options):
        text = render()
        if check:
            if Path(check).read_text() != text:
                raise CommandError(f"{check} is out of date: run `make lifecycle-diagram`.")
            return
        if write:
            Path(write).write_text(text)
            self.stdout.write(f"wrote {write}")
        else:
            self.stdout.write(text)
