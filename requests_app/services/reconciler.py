"""The reconciler: work the database says is due but that no task is doing (the
broker lost a message, a worker died, the broker was down when a step committed),
sent again. Every task is idempotent, so a duplicate is harmless.

What "due" means comes from the domains themselves: the follow-up of each step of
the machine (its ``custom["follow_up"]``, the same table lifecycle.py enqueues
from), the outbox's unsent emails, and the fulfilment runs nobody works on.

How long work may wait before it counts as lost depends on what is known
(services/health.py): normally RECONCILE_AFTER_SECONDS (a message may just be
waiting its turn in a long queue); but after a sign that work *was* lost, a
*sweep* sends again everything pending at once: a send to the broker failed
(queue.note_lost_work), the broker's Redis came back empty, or a worker died
(its heartbeat went quiet). A worker's heartbeat thread sends the reconciler as
soon as the database or the broker answers again after an outage, so lost work is
found within seconds of a service's return, not minutes.
"""

import datetime
import logging

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from requests_app.models import OutgoingEmail, PrivacyRequest, SourceRun, State
from requests_app.rules import OPT_OUT_TYPES
from requests_app.services import health
from requests_app.services.fulfilment import runs
from requests_app.services.notices.outbox import SEND_EMAIL
from requests_app.services.queue import enqueue

log = logging.getLogger(__name__)


def follow_ups() -> dict[str, str]:
    """State reached -> the task that moves a request on from it, read from the
    machine: every step with a follow-up task, by its target state."""
    return {t.target: t.custom["follow_up"]
            for t in PrivacyRequest._meta.get_field("state").get_all_transitions(PrivacyRequest)
            if t.custom.get("follow_up") and t.target}


def _requests_left_in(state, stale, **filters):
    return PrivacyRequest.objects.filter(state=state, updated_at__lte=stale,
                                         **filters).values_list("pk", flat=True)


@shared_task
def reconcile() -> dict:
    """Periodic (and sent by a worker when a service returns): send again what is
    due and not being done; returns what was sent."""
    now = timezone.now()
    dead = health.newly_dead_workers()
    emptied = health.broker_lost_its_data()  # asked every time: it re-arms the mark
    sweep = emptied or bool(dead) or health.lost_work_since() is not None
    stale = now if sweep else now - datetime.timedelta(seconds=settings.RECONCILE_AFTER_SECONDS)
    counts = {"emails": 0, "follow_ups": 0, "runs": 0, "timeouts": 0, "checks": 0,
              "sweep": sweep}
    for email_id in OutgoingEmail.objects.filter(  # letters wait for staff to post them
            channel=OutgoingEmail.Channel.EMAIL, sent_at=None,
            created_at__lte=stale).values_list("pk", flat=True):
        enqueue(SEND_EMAIL, email_id)
        counts["emails"] += 1
    counts["follow_ups"] = _follow_ups(stale)
    for run_id in runs.stuck_runs(pending_before=stale if sweep else None).values_list(
            "pk", flat=True):
        SourceRun.objects.filter(pk=run_id).update(dispatched_at=timezone.now())
        enqueue(runs.RUN_SOURCE, run_id)
        counts["runs"] += 1
    # HTTP sources that answered 202 and never called back.
    for run_id in runs.silent_http_runs().values_list("pk", flat=True):
        runs.fail_silent_run(run_id)
        counts["timeouts"] += 1
    # Requests whose runs are all settled but which did not move on (a lost check).
    # One still waiting on a manual owner or an HTTP reply is moved by that answer
    # (which queues its check), not woken every minute.
    for request_id in PrivacyRequest.objects.filter(
        state__in=[State.FULFILLING, State.WAITING_MANUAL], updated_at__lte=stale
    ).exclude(source_runs__state__in=[SourceRun.State.PENDING, SourceRun.State.RUNNING,
                                      SourceRun.State.WAITING]
              ).values_list("pk", flat=True):
        enqueue(runs.CHECK, request_id)
        counts["checks"] += 1
    if sweep:
        health.swept(now, dead)
    if any(v for k, v in counts.items() if k != "sweep"):
        log.info("reconcile: re-sent %s", counts)
    return counts


def _follow_ups(stale) -> int:
    """Requests left in a state whose step has a follow-up (it was lost)."""
    count = 0
    due = follow_ups()
    for state, task in due.items():
        if state == State.FULFILLING:
            continue  # a request being fulfilled moves on by its runs (reconcile)
        for request_id in _requests_left_in(state, stale):
            enqueue(task, request_id)
            count += 1
    # Opt-outs left in review (their approval, taken by begin_review, was lost).
    for request_id in _requests_left_in(State.IN_REVIEW, stale,
                                        request_type__in=OPT_OUT_TYPES):
        enqueue(due[State.VERIFIED], request_id)
        count += 1
    return count
