"""One-time codes sent by email: the portal's proof that someone controls an address.

A code is 8 random digits, stored only as a keyed hash, good for CODE_TTL_HOURS
(24 by default) and for one use; CODE_MAX_FAILURES wrong tries (5) lock it. Only
the newest code of a (purpose, subject) pair counts. A new code may be sent at
most once a minute and CODE_MAX_PER_DAY times a day (5) for the same pair.

`subject` is never an address: subject_for_email() gives a keyed hash of it.
"""

import datetime
import enum
import hashlib
import hmac
import secrets

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy

from requests_app.models import OneTimeCode

CODE_DIGITS = 8


class TooManyCodes(Exception):
    """A code was sent for this purpose and subject less than a minute ago, or the
    day's allowance is used up."""


class Result(enum.Enum):
    OK = "ok"
    WRONG = "wrong"
    EXPIRED = "expired"
    USED = "used"
    LOCKED = "locked"


# What to tell the person when a code is refused (the pages word WRONG their way).
PROBLEMS = {
    Result.WRONG: gettext_lazy("That code is not right. Check the email and try again."),
    Result.EXPIRED: gettext_lazy("That code has expired. Ask for a new one."),
    Result.USED: gettext_lazy("That code was used already. Ask for a new one."),
    Result.LOCKED: gettext_lazy("Too many wrong tries: this code is locked. Ask for a "
                                "new one."),
}


def _key() -> bytes:
    return hashlib.sha256(("codes:" + settings.IDENTITY_HASH_KEY).encode()).digest()


def subject_for_email(email: str) -> str:
    """A keyed hash of the normalised address (trimmed, lower case)."""
    normal = (email or "").strip().lower()
    return hmac.new(_key(), b"email:" + normal.encode(), hashlib.sha256).hexdigest()


def _hash(purpose: str, subject: str, code: str) -> str:
    message = f"{purpose}\n{subject}\n{code}".encode()
    return hmac.new(_key(), message, hashlib.sha256).hexdigest()


def issue(purpose: str, subject: str, *, hours: int | None = None) -> str:
    """A new code for this purpose and subject (earlier ones stop counting), good for
    `hours` (default CODE_TTL_HOURS; a code sent by letter lasts longer)."""
    now = timezone.now()
    with transaction.atomic():
        recent = (OneTimeCode.objects.select_for_update()
                  .filter(purpose=purpose, subject=subject,
                          created_at__gte=now - datetime.timedelta(days=1))
                  .order_by("-created_at"))
        recent = list(recent)
        if recent and recent[0].created_at > now - datetime.timedelta(
                seconds=settings.CODE_RESEND_SECONDS):
            raise TooManyCodes
        if len(recent) >= settings.CODE_MAX_PER_DAY:
            raise TooManyCodes
        code = "".join(secrets.choice("0123456789") for _ in range(CODE_DIGITS))
        OneTimeCode.objects.create(
            purpose=purpose, subject=subject, code_hash=_hash(purpose, subject, code),
            expires_at=now + datetime.timedelta(hours=hours or settings.CODE_TTL_HOURS))
    return code


def check(purpose: str, subject: str, typed: str) -> Result:
    """Check a typed code against the newest code of the pair, counting a wrong try."""
    typed = "".join((typed or "").split())
    now = timezone.now()
    with transaction.atomic():
        current = (OneTimeCode.objects.select_for_update()
                   .filter(purpose=purpose, subject=subject).order_by("-created_at").first())
        if current is None:
            return Result.WRONG
        if current.failures >= settings.CODE_MAX_FAILURES:
            return Result.LOCKED
        right = hmac.compare_digest(current.code_hash, _hash(purpose, subject, typed))
        if not right:
            current.failures += 1
            current.save(update_fields=["failures"])
            return Result.LOCKED if current.failures >= settings.CODE_MAX_FAILURES else Result.WRONG
        if current.used_at is not None:
            return Result.USED
        if current.expires_at <= now:
            return Result.EXPIRED
        current.used_at = now
        current.save(update_fields=["used_at"])
    return Result.OK


def purge_old(days: int = 2) -> int:
    """Delete codes that expired more than `days` ago (nothing can use them)."""
    cutoff = timezone.now() - datetime.timedelta(days=days)
    return OneTimeCode.objects.filter(expires_at__lt=cutoff).delete()[0]
