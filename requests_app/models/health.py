"""What the processes leave in the database about their own health, read by
/healthz and the reconciler (services/health.py), and the rate limits' counters
while the cache is away (ratelimit.py)."""

from django.db import models


class Heartbeat(models.Model):
    """A sign of life, or of trouble, by name:

    - ``worker:<hostname>``: a Celery worker beats every WORKER_HEARTBEAT_SECONDS
      (``at``), since ``since``; the row goes when the worker stops cleanly, so one
      that has gone quiet died. ``swept`` is set once the reconciler has sent again
      the work it may have held.
    - ``lost-work``: since ``since``, work sent to the broker may have been lost (a
      publish failed, the broker came back empty, a worker died): the reconciler
      sends everything pending again, then removes the row.
    """

    name = models.CharField(max_length=200, primary_key=True)
    since = models.DateTimeField()
    at = models.DateTimeField()
    swept = models.BooleanField(default=False)


class RateCount(models.Model):
    """One rate-limit counter (its key is hashed, as in the cache), kept here only
    while the cache cannot be reached."""

    key = models.CharField(max_length=120, unique=True)
    count = models.PositiveIntegerField(default=1)
    expires_at = models.DateTimeField(db_index=True)
