"""The health check (`/healthz`): the database and the broker answer, the workers
beat, the queues move.

The database or the broker unreachable: 503, so that a load balancer takes the
web node out. Dead workers (services/health.py), no live worker, or a queue whose
oldest message is older than HEALTHZ_BACKLOG_SECONDS: "degraded", still 200 (the
web node itself can serve; monitoring alerts on it)."""

import logging

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from requests_app.services import health

log = logging.getLogger(__name__)


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception:  # any failure means "not reachable"; the kind is logged
        log.warning("healthz: database unreachable", exc_info=True)
        return False


def _workers_and_queues(database: bool, broker: bool) -> tuple[dict, dict, list[str]]:
    workers = queues = {}
    troubles = []
    if database:
        try:
            workers = health.workers()
        except DatabaseError:
            log.warning("healthz: worker heartbeats unreadable", exc_info=True)
        if workers and (workers["dead"] or not workers["alive"]):
            troubles.append("workers")
    if broker:
        try:
            queues = health.backlog()
        except Exception:
            log.warning("healthz: queues unreadable", exc_info=True)
        if any((q["oldest_seconds"] or 0) > settings.HEALTHZ_BACKLOG_SECONDS
               for q in queues.values()):
            troubles.append("backlog")
    return workers, queues, troubles


@never_cache
@require_GET
def healthz(request):
    checks = {
        "database": "ok" if _database_ok() else "unreachable",
        "broker": "ok" if health.broker_answers() else "unreachable",
    }
    failing = [name for name, v in checks.items() if v != "ok"]
    workers, queues, troubles = _workers_and_queues(checks["database"] == "ok",
                                                    checks["broker"] == "ok")
    if failing:
        status = "failing: " + ", ".join(failing)
    else:
        status = "degraded: " + ", ".join(troubles) if troubles else "ok"
    body = {"status": status, **checks, "workers": workers, "queues": queues}
    return JsonResponse(body, status=503 if failing else 200)
