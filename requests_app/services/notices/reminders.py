"""Emails that tell staff what is coming due (issue 15, item 3), through the outbox
(rendered in the transaction that causes them, sent after the commit, re-sent by
the reconciler if lost; kept a day once sent, like every email about no request):

- a daily digest to each assignee of their open requests due within
  STAFF_DIGEST_BUSINESS_DAYS business days (of the request's jurisdiction) or
  overdue, and to each manager (`assign_request`) of all of them, assigned or not;
  at most one a day per person (StaffEmailSettings.digest_sent_on), none when
  there is nothing to say;
- an email to the assignee when someone else assigns them a request.

Each can be turned off per person on the staff settings page. Like every staff
email they carry references, dates and links, never the person's data."""

import datetime
import functools
import operator

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from requests_app import deadlines
from requests_app.models import OutgoingEmail, PrivacyRequest, StaffEmailSettings
from requests_app.models.privacy_request import OPEN_STATES
from requests_app.rules import JURISDICTIONS, UNKNOWN
from requests_app.services.notices.outbox import queue_plain

FOLDER = "staff_emails"
MANAGE = "requests_app.assign_request"


def _urls(request: PrivacyRequest | None = None) -> dict:
    urls = {"settings_url": f"{settings.SITE_URL}/staff/settings/",
            "queue_url": f"{settings.SITE_URL}/staff/queue/"}
    if request is not None:
        urls["desk_url"] = f"{settings.SITE_URL}/staff/requests/{request.reference}/"
    return urls


def queue_assignment_email(request: PrivacyRequest, assignee, *, by) -> OutgoingEmail | None:
    """Tell `assignee` that `by` gave them the request (not when they claimed it
    themselves, nor when they turned these emails off)."""
    if assignee is None or assignee.pk == by.pk or not assignee.email:
        return None
    if not StaffEmailSettings.of(assignee).on_assignment:
        return None
    return queue_plain(assignee.email, "assigned", folder=FOLDER, reference=request.reference,
                       kind=str(request.type_rules.label), due=request.current_due_on,
                       jurisdiction=request.get_jurisdiction_display(),
                       by=by.get_username(), **_urls(request))


def horizons(today: datetime.date) -> dict[str, datetime.date]:
    """The last due date that counts as "due soon", by jurisdiction."""
    n = settings.STAFF_DIGEST_BUSINESS_DAYS
    return {code: deadlines.add_business_days(today, n, code)
            for code in [*JURISDICTIONS, UNKNOWN]}


def due_soon_and_overdue(today: datetime.date) -> list[PrivacyRequest]:
    """Open requests whose current due date (an appeal's, an extended one, else the
    first) is at most STAFF_DIGEST_BUSINESS_DAYS business days away, or past."""
    last = horizons(today)
    within = functools.reduce(operator.or_, [
        Q(jurisdiction=code, current_due__lte=day) for code, day in last.items()])
    within |= ~Q(jurisdiction__in=list(last)) & Q(current_due__lte=last[UNKNOWN])
    return list(PrivacyRequest.objects.filter(state__in=OPEN_STATES)
                .annotate(current_due=Coalesce("appeal_due_on", "extended_due_on", "due_on"))
                .filter(within).select_related("assignee").order_by("current_due", "id"))


def _row(request: PrivacyRequest, today: datetime.date) -> dict:
    return {"reference": request.reference, "kind": str(request.type_rules.label),
            "state": request.get_state_display(), "due": request.current_due,
            "days": abs((request.current_due - today).days),
            "assignee": request.assignee.get_username() if request.assignee else "",
            **_urls(request)}


def send_digests(today: datetime.date | None = None) -> int:
    """Queue today's digest for every active staff member with an email address and
    something to read; returns how many were queued."""
    today = today or timezone.localdate()
    rows = due_soon_and_overdue(today)
    if not rows:
        return 0
    staff = get_user_model().objects.filter(is_active=True, is_staff=True).exclude(email="")
    sent = 0
    for user in staff.order_by("pk"):
        manager = user.has_perm(MANAGE)
        theirs = [r for r in rows if manager or r.assignee_id == user.pk]
        if theirs and _send_digest(user, theirs, today, manager=manager):
            sent += 1
    return sent


def _send_digest(user, rows: list[PrivacyRequest], today: datetime.date, *, manager) -> bool:
    StaffEmailSettings.objects.get_or_create(user=user)
    with transaction.atomic():
        own = StaffEmailSettings.objects.select_for_update().get(user=user)
        if not own.daily_digest or own.digest_sent_on == today:
            return False
        overdue = [_row(r, today) for r in rows if r.current_due < today]
        soon = [_row(r, today) for r in rows if r.current_due >= today]
        queue_plain(user.email, "digest", folder=FOLDER, today=today, overdue=overdue,
                    soon=soon, manager=manager, business_days=settings.STAFF_DIGEST_BUSINESS_DAYS,
                    **_urls())
        own.digest_sent_on = today
        own.save(update_fields=["digest_sent_on"])
    return True
