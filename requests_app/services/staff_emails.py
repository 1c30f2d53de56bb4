"""Emails to staff and to third parties (not consumer notices: those go through
the outbox in notices.py). Staff emails carry a reference and a link, never the
person's data."""

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from requests_app.models import Actor, SourceRun, ThirdPartyNotice
from requests_app.services.audit import record_event


def notify_source_owner(run_id: int, *, reminder: bool = False) -> bool:
    run = SourceRun.objects.select_related("source__owner", "request").get(pk=run_id)
    owner = run.source.owner
    if run.state != SourceRun.State.WAITING or owner is None or not owner.email:
        return False
    prefix = "Reminder: " if reminder else ""
    send_mail(
        f"{prefix}A privacy request needs you: {run.request.reference} ({run.source.name})",
        f"A privacy request needs your action on {run.source.name}: "
        f"{run.get_action_display().lower()}.\n\n"
        f"Request {run.request.reference}, due {run.request.current_due_on:%B %-d, %Y}.\n"
        f"Open your task: {settings.SITE_URL}/staff/tasks/{run.token}/\n",
        None, [owner.email],
    )
    SourceRun.objects.filter(pk=run_id).update(reminded_at=timezone.now())
    return True


def send_third_party_notice(notice_id: int) -> bool:
    """Pass a deletion on to a third party that received the person's data. Without
    a contact address the notice stays for staff to send by hand."""
    with transaction.atomic():
        notice = ThirdPartyNotice.objects.select_for_update(of=("self",)).select_related(
            "third_party", "request__identity").get(pk=notice_id)
        party = notice.third_party
        if notice.state != ThirdPartyNotice.State.PENDING or not party.contact_email:
            return False
        identity = notice.request.identity
        send_mail(
            f"Deletion request {notice.request.reference}",
            "A consumer has exercised their right to have their personal information "
            "deleted. Please delete the personal information we disclosed to you about "
            f"the person below and confirm by replying to this email.\n\n"
            f"Reference: {notice.request.reference}\nEmail: {identity.email}\n"
            + (f"Customer number: {identity.account_number}\n" if identity.account_number else ""),
            None, [party.contact_email],
        )
        notice.state = ThirdPartyNotice.State.SENT
        notice.sent_at = timezone.now()
        notice.save()
        record_event("third_party.notified", actor=Actor.system(), request=notice.request,
                     data={"third_party": party.name})
    return True
