"""The health of the workers and the broker, as the database and Redis tell it:
read by /healthz and by the reconciler.

- Each Celery worker runs a heartbeat thread (started by the worker_ready signal):
  every WORKER_HEARTBEAT_SECONDS it writes its row (Heartbeat "worker:<hostname>")
  and asks the broker whether it answers. A worker that stops cleanly removes its
  row; one whose row goes quiet for three beats died (kill -9, a lost machine).
- When the broker does not answer, the thread notes that work may have been lost
  (queue.note_lost_work); when the database or the broker answers again after an
  outage, it sends the reconciler at once rather than waiting for beat's minute.
- Every task message carries the time it was sent (a header set in
  privacyportal/celery.py), so the age of each queue's oldest message is its backlog.
"""

import datetime
import json
import logging
import threading

from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import DatabaseError, connections
from django.utils import timezone

from privacyportal.celery import SENT_AT_HEADER, app
from requests_app.models import Heartbeat
from requests_app.services.queue import LOST_WORK, enqueue, note_lost_work

log = logging.getLogger(__name__)

RECONCILE = "requests_app.services.reconciler.reconcile"
WORKER = "worker:"
# A key the reconciler keeps in the broker's Redis: when it is missing, Redis came
# back empty (restarted without persistence, flushed) and every queued message is gone.
BROKER_MARK = "privacyportal:broker-alive-since"
# A dead worker is reported (and forgotten) after this long.
FORGET_DEAD_AFTER = datetime.timedelta(hours=1)


def quiet_after() -> datetime.timedelta:
    return datetime.timedelta(seconds=3 * settings.WORKER_HEARTBEAT_SECONDS)


def broker_answers(timeout: float = 2.0) -> bool:
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
        return True
    except Exception:  # any failure means "not reachable"; the kind is logged
        log.warning("broker unreachable", exc_info=True)
        return False


def _redis():
    """The broker's Redis client, or None when the broker is not Redis."""
    if not app.conf.broker_url.startswith(("redis:", "rediss:")):
        return None
    return app.connection_for_write().default_channel.client


def broker_lost_its_data() -> bool:
    """True once after the broker's Redis came back empty (and the first time)."""
    client = _redis()
    if client is None:
        return False  # the filesystem broker keeps its messages on disk
    return bool(client.set(BROKER_MARK, timezone.now().isoformat(), nx=True))


def queue_names() -> list[str]:
    queues = app.conf.task_queues
    return sorted({q.name for q in queues}) if queues else [app.conf.task_default_queue]


def backlog() -> dict:
    """Per queue: messages waiting and the age in seconds of the oldest (None when
    empty, or not known: a broker other than Redis)."""
    client = _redis()
    now = timezone.now().timestamp()
    ages = {}
    for name in queue_names():
        if client is None:
            ages[name] = {"waiting": None, "oldest_seconds": None}
            continue
        waiting, oldest = client.llen(name), client.lindex(name, -1)
        sent = _sent_at(oldest) if oldest else None
        ages[name] = {"waiting": waiting,
                      "oldest_seconds": round(max(0.0, now - sent), 1) if sent else None}
    return ages


def _sent_at(raw: bytes) -> float | None:
    try:
        return float(json.loads(raw)["headers"][SENT_AT_HEADER])
    except (ValueError, KeyError, TypeError):
        return None


def workers() -> dict:
    """Workers beating now, and those that went quiet (died) in the last hour."""
    now = timezone.now()
    rows = Heartbeat.objects.filter(name__startswith=WORKER, at__gte=now - FORGET_DEAD_AFTER)
    alive = sum(1 for at in rows.values_list("at", flat=True) if at >= now - quiet_after())
    return {"alive": alive, "dead": rows.count() - alive}


def newly_dead_workers() -> list[str]:
    """Workers that died and whose work was not sent again yet; forgets those dead
    for more than an hour."""
    now = timezone.now()
    Heartbeat.objects.filter(name__startswith=WORKER, at__lt=now - FORGET_DEAD_AFTER).delete()
    return list(Heartbeat.objects.filter(name__startswith=WORKER, swept=False,
                                         at__lt=now - quiet_after())
                .values_list("name", flat=True))


def lost_work_since() -> datetime.datetime | None:
    return Heartbeat.objects.filter(name=LOST_WORK).values_list("since", flat=True).first()


def swept(started: datetime.datetime, dead: list[str]) -> None:
    """Everything pending at `started` was sent again: forget the losses noted before."""
    Heartbeat.objects.filter(name=LOST_WORK, at__lte=started).delete()
    Heartbeat.objects.filter(name__in=dead).update(swept=True)


class WorkerHeartbeat(threading.Thread):
    def __init__(self, hostname: str):
        super().__init__(daemon=True, name="worker-heartbeat")
        self.name_in_db = WORKER + hostname
        self.stopping = threading.Event()

    def run(self) -> None:
        up = True
        while True:
            broker_up = broker_answers()
            now_up = self.beat(broker_up) and broker_up
            if now_up and not up:
                now_up = self.send_reconciler()
            up = now_up
            if self.stopping.wait(settings.WORKER_HEARTBEAT_SECONDS):
                return

    def beat(self, broker_up: bool) -> bool:
        """Write this worker's row (True when the database took it); with the broker
        away, note that work may have been lost."""
        now = timezone.now()
        try:
            if not Heartbeat.objects.filter(name=self.name_in_db).update(at=now, swept=False):
                Heartbeat.objects.update_or_create(
                    name=self.name_in_db, defaults={"since": now, "at": now, "swept": False})
            if not broker_up:
                note_lost_work()
            return True
        except DatabaseError:
            log.warning("worker heartbeat not written: the database is unreachable")
            return False
        finally:
            connections.close_all()  # this thread's own connection, never shared

    @staticmethod
    def send_reconciler() -> bool:
        """A service is back after an outage: look for lost work now."""
        try:
            enqueue(RECONCILE)
            log.info("services answer again: reconciler sent")
            return True
        except Exception:
            log.warning("reconciler not sent: the broker is still unreachable")
            return False

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)
        try:
            Heartbeat.objects.filter(name=self.name_in_db).delete()
        except DatabaseError:
            log.warning("worker heartbeat not removed: the database is unreachable")
        finally:
            connections.close_all()


_beating: list[WorkerHeartbeat] = []


@worker_ready.connect
def _start_beating(sender=None, **_kwargs) -> None:
    thread = WorkerHeartbeat(sender.hostname)
    _beating.append(thread)
    thread.start()


@worker_shutdown.connect
def _stop_beating(**_kwargs) -> None:
    while _beating:
        _beating.pop().stop()
