"""Work for the workers, named by the task's dotted path, so that no use case imports
a task module (the task modules import the use cases they run).

`enqueue_on_commit` is how a use case asks for its follow-up work; `enqueue` is for
periodic tasks that re-send work the database says is due (the reconciler).
"""

import json

from django.db import transaction
from django.utils.module_loading import import_string

from privacyportal.celery import app


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
        # robust: a broker that is down must not turn a committed step into an
        # error for the user, nor skip the other callbacks. The work is in the
        # database; the reconciler sends it again.
        transaction.on_commit(lambda: app.send_task(task_name, args=args), robust=True)


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
