"""Work for the workers, named by the task's dotted path, so that no use case imports
a task module (the task modules import the use cases they run).

`enqueue_on_commit` is how a use case asks for its follow-up work; `enqueue` is for
periodic tasks that re-send work the database says is due (the reconciler).

A broker that cannot be reached never turns a committed step into an error: the
work is in the database, the failed send is noted (`note_lost_work`), and the
reconciler sends everything pending again once the broker is back.
"""

import json
import logging
import time

from django.db import DatabaseError, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from privacyportal.celery import app
from requests_app.models import Heartbeat

log = logging.getLogger(__name__)

# The Heartbeat row that says since when work sent to the broker may have been lost.
LOST_WORK = "lost-work"
# After a failed send, this process sends nothing for this long (each send would
# wait for the broker again): the work waits in the database for the reconciler.
PAUSE_AFTER_FAILURE = 5.0
_paused_until = 0.0


def enqueue_on_commit(task_name: str, *args) -> None:
    """Send a task once the current transaction commits, and only then: a worker
    must never look for a row that is not committed yet, and a rolled-back change
    must not leave work behind.

    Arguments go through JSON here even when tasks run eagerly (in tests), so a
    task that could not cross a real broker fails in tests too."""
    args = _json(args)
    if app.conf.task_always_eager:
        transaction.on_commit(lambda: _run_eagerly(task_name, args))
    else:
        transaction.on_commit(lambda: _send_or_note(task_name, args), robust=True)


def _send_or_note(task_name: str, args: list) -> None:
    """Send the task; if the broker cannot take it, note that work was lost."""
    global _paused_until
    if time.monotonic() < _paused_until:
        note_lost_work()
        return
    try:
        app.send_task(task_name, args=args)
    except Exception as exc:  # kombu's OperationalError, or the transport's own
        _paused_until = time.monotonic() + PAUSE_AFTER_FAILURE
        log.warning("broker unreachable (%s): %s left for the reconciler",
                    type(exc).__name__, task_name.rsplit(".", 1)[-1])
        note_lost_work()


def note_lost_work() -> None:
    """Work sent to the broker may have been lost from now on (a send failed, the
    broker went away): the reconciler sends everything pending again."""
    now = timezone.now()
    try:
        if not Heartbeat.objects.filter(name=LOST_WORK).update(at=now):
            Heartbeat.objects.get_or_create(name=LOST_WORK, defaults={"since": now, "at": now})
    except DatabaseError:
        log.warning("lost work not noted: the database is unreachable too")


def enqueue(task_name: str, *args) -> None:
    """Send a task now (outside any transaction that must commit first)."""
    args = _json(args)
    if app.conf.task_always_eager:
        _run_eagerly(task_name, args)
    else:
        app.send_task(task_name, args=args)


def _json(args: tuple) -> list:
    return json.loads(json.dumps(args))


def _run_eagerly(task_name: str, args: list) -> None:
    # throw=False lets apply() run the task's retries (eagerly, one after the other);
    # get() then raises whatever the last attempt raised, so tests see failures.
    import_string(task_name).apply(args=args, throw=False).get()
