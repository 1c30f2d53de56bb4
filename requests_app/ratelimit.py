"""Rate limits for the public pages, counted in Django's cache (Redis in
production, shared by every web process), per source address and per email
address *from* that source address.

    from requests_app import ratelimit

    if ratelimit.exceeded(request, "code", email=email):
        return ratelimit.too_many(request)

Buckets are named after the settings: "form" reads RATELIMIT_FORM_PER_IP and
RATELIMIT_FORM_PER_EMAIL, "code" reads RATELIMIT_CODE_PER_*. Windows are fixed
hours. Keys are hashed, so the cache holds no address in clear.

The per-email limit counts an address together with the source address it comes
from: a stranger who floods the form with someone else's address uses up only
their own allowance for it, never that person's (and the request form lets a
person over the limit file by proving control of the address: portal/views.py).

When the cache cannot be reached (Redis is down), the limits are counted in the
database instead (RateCount): they keep holding, and the page never fails for it.
"""

import datetime
import hashlib
import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import F
from django.shortcuts import render
from django.utils import timezone
from redis.exceptions import RedisError

from requests_app.models import RateCount

WINDOW = 3600
# What a cache that cannot be reached raises: Redis's errors, a file cache's OSError.
CACHE_ERRORS = (RedisError, OSError)

log = logging.getLogger(__name__)


def client_ip(request) -> str:
    """The socket's address, or behind a trusted proxy the one it appended."""
    if settings.AXES_IPWARE_META_PRECEDENCE_ORDER[0] == "HTTP_X_FORWARDED_FOR":
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            return forwarded.split(",")[-1].strip()
    return request.META.get("REMOTE_ADDR", "")


def _key(bucket: str, kind: str, value: str) -> str:
    digest = hashlib.sha256(f"{settings.IDENTITY_HASH_KEY}|{value}".encode()).hexdigest()[:32]
    return f"rl:{bucket}:{kind}:{int(time.time() // WINDOW)}:{digest}"


def _hit(key: str) -> int:
    try:
        if cache.add(key, 1, WINDOW + 60):
            return 1
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, WINDOW + 60)
        return 1


def _hit_in_database(key: str) -> int:
    """The same count, in the database: while the cache is away."""
    now = timezone.now()
    with transaction.atomic():
        row, created = RateCount.objects.get_or_create(
            key=key, defaults={"expires_at": now + datetime.timedelta(seconds=WINDOW + 60)})
        if created:
            RateCount.objects.filter(expires_at__lt=now).delete()
            return 1
        RateCount.objects.filter(pk=row.pk).update(count=F("count") + 1)
        return RateCount.objects.values_list("count", flat=True).get(pk=row.pk)


def _hits(keys: list[str]) -> list[int]:
    try:
        return [_hit(key) for key in keys]
    except CACHE_ERRORS as exc:
        log.warning("rate limits: the cache is unreachable (%s), counting in the database",
                    type(exc).__name__)
        return [_hit_in_database(key) for key in keys]


def mailbox(email: str) -> str:
    """The mailbox an address delivers to, for counting: lower case, without a
    "+tag" in the local part (pat+1@example.com and pat+2@... reach pat@...), so
    that tags do not multiply the per-address limit. Other text (a reference) is
    only lowered."""
    normal = email.strip().lower()
    local, at, domain = normal.rpartition("@")
    if not at or not local:
        return normal
    return f"{local.split('+', 1)[0] or local}@{domain}"


@dataclass(frozen=True)
class Verdict:
    """Which limit a hit went over: the source address's own, or that of the email
    address (or reference) from this source address."""

    ip: bool = False
    email: bool = False

    def __bool__(self) -> bool:
        return self.ip or self.email


def count(request, bucket: str, *, email: str = "") -> Verdict:
    """Count one hit for this request's source address (and the email from it, when
    given) in `bucket`, and say which hourly limit is over."""
    if not settings.RATELIMIT_ENABLED:
        return Verdict()
    name = bucket.upper()
    ip = client_ip(request)
    keys = [_key(bucket, "ip", ip)]
    if email:
        keys.append(_key(bucket, "email", f"{mailbox(email)}|{ip}"))
    hits = _hits(keys)
    return Verdict(
        ip=hits[0] > getattr(settings, f"RATELIMIT_{name}_PER_IP"),
        email=len(hits) > 1 and hits[1] > getattr(settings, f"RATELIMIT_{name}_PER_EMAIL"))


def exceeded(request, bucket: str, *, email: str = "") -> bool:
    """Count one hit (see count()); True when either limit is over."""
    return bool(count(request, bucket, email=email))


def too_many(request):
    return render(request, "portal/429.html", status=429)
