"""Rate limits for the public pages, counted in Django's cache (Redis in
production, shared by every web process), per IP address and per email address.

    from requests_app import ratelimit

    if ratelimit.exceeded(request, "code", email=email):
        return ratelimit.too_many(request)

Buckets are named after the settings: "form" reads RATELIMIT_FORM_PER_IP and
RATELIMIT_FORM_PER_EMAIL, "code" reads RATELIMIT_CODE_PER_*. Windows are fixed
hours. Keys are hashed, so the cache holds no address in clear.
"""

import hashlib
import time

from django.conf import settings
from django.core.cache import cache
from django.shortcuts import render

WINDOW = 3600


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


def exceeded(request, bucket: str, *, email: str = "") -> bool:
    """Count one hit for this request's IP address (and the email, when given) in
    `bucket`; True when either is over its hourly limit."""
    if not settings.RATELIMIT_ENABLED:
        return False
    name = bucket.upper()
    over = _hit(_key(bucket, "ip", client_ip(request))) > getattr(
        settings, f"RATELIMIT_{name}_PER_IP")
    if email:
        over = _hit(_key(bucket, "email", mailbox(email))) > getattr(
            settings, f"RATELIMIT_{name}_PER_EMAIL") or over
    return over


def too_many(request):
    return render(request, "portal/429.html", status=429)
