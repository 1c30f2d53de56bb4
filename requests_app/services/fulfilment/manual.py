"""Manual sources: the owner's answer to a task (records uploaded, or an erasure,
correction or opt-out confirmed done or impossible) finishes the run; the
request's check is queued as for any run finished outside a worker."""

from django.db import transaction

from requests_app.models import Actor, SourceRun
from requests_app.services.audit.events import record_event
from requests_app.services.fulfilment.attempts import NotOurs, attempt
from requests_app.sources.base import SourceError


def complete_manual_run(run: SourceRun, *, actor: Actor, records=None, outcome: str = "",
                        reason: str = "", period_applied: bool | None = None) -> None:
    """The owner of a manual source finished their task: records uploaded, or the
    deletion/correction confirmed done, or impossible (with the reason).
    `period_applied`: for a Right to Know period, whether the owner kept to it."""
    try:
        with attempt(run.pk, waiting=True) as work:
            _record(run, work, actor, records, outcome, reason, period_applied)
    except NotOurs:
        raise SourceError("This task is not waiting for you any more.") from None
    if work.error is not None:
        raise work.error  # recorded on the run (it failed); the owner sees an error too


def _record(run: SourceRun, work, actor: Actor, records, outcome: str, reason: str,
            period_applied: bool | None = None) -> None:
    if records is not None:
        with work.sink() as sink:
            category = _category_for(run.source, sink)
            for record in records:
                sink.write(run.source.name, dict(record), {k: category for k in record})
        result = {"collections": sink.collections}
        if period_applied is not None:
            result["period_applied"] = period_applied
        count = len(records)
    else:
        result = {"outcome": outcome, "reason": reason}
        count = None
    with transaction.atomic():
        # The run's row first, the audit chain second, as finish_run takes them.
        SourceRun.objects.select_for_update(of=("self",)).filter(pk=run.pk).first()
        record_event(f"source.{run.action}.manual", actor=actor, request=run.request,
                     data={"source": run.source.name, "outcome": outcome or "uploaded",
                           "records": count})
        work.finish(count, result)


def _category_for(source, sink) -> str:
    """Uploaded records carry no per-field categories. If the source holds anything
    the request's jurisdiction holds back (sink.withholds), every uploaded value is
    treated as such (withheld): we cannot tell which field it is in. Otherwise the
    source's first category."""
    sensitive = [c for c in source.categories or [] if sink.withholds(c)]
    return sensitive[0] if sensitive else (source.categories or ["user"])[0]
