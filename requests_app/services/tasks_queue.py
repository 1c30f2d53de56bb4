import json

from django.db import transaction

from privacyportal.celery import app


def enqueue_on_commit(task, *args) -> None:
    """Send a task once the current transaction commits, and only then: a worker
    must never look for a row that is not committed yet, and a rolled-back change
    must not leave work behind.

    Arguments go through JSON here even when tasks run eagerly (in tests), so a
    task that could not cross a real broker fails in tests too."""
    args = json.loads(json.dumps(args))
    if app.conf.task_always_eager:
        transaction.on_commit(lambda: _run_eagerly(task, args))
    else:
        # robust: a broker that is down must not turn a committed step into an
        # error for the user, nor skip the other callbacks. The work is in the
        # database; the reconciler sends it again.
        transaction.on_commit(lambda: task.apply_async(args=args), robust=True)


def _run_eagerly(task, args) -> None:
    # throw=False lets apply() run the task's retries (eagerly, one after the other);
    # get() then raises whatever the last attempt raised, so tests see failures.
    task.apply(args=args, throw=False).get()
