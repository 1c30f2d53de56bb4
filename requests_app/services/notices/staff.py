"""Emails to staff and to third parties (not consumer notices: those go through
the outbox in notices.py). Staff emails carry a reference and a link, never the
person's data."""

from django.conf import settings
from django.core import signing
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from requests_app.models import Actor, SourceRun, ThirdPartyNotice
from requests_app.services.audit.events import record_event


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


# What a third party is asked to do, by the kind of request passed on.
_ASKS = {
    "deletion": ("Deletion request {ref}",
                 "A consumer has exercised their right to have their personal information "
                 "deleted. Please delete the personal information we disclosed to you about "
                 "the person below."),
    "opt_out": ("Opt-out {ref}: stop using and disclosing this person's data",
                "A consumer has opted out ({what}). Please stop selling, sharing or "
                "otherwise using the personal information we disclosed to you about the "
                "person below for that purpose, and do not pass it on."),
}


def confirm_token(notice_id: int) -> str:
    return signing.dumps(notice_id, salt=CONFIRM_SALT)


CONFIRM_SALT = "third-party-notice"


def send_third_party_notice(notice_id: int) -> bool:
    """Pass a deletion or an opt-out on to a third party that received the person's
    data, with a link to confirm it is done. Without a contact address the notice
    stays for staff to send by hand."""
    with transaction.atomic():
        notice = ThirdPartyNotice.objects.select_for_update(of=("self",)).select_related(
            "third_party", "request__identity").get(pk=notice_id)
        party = notice.third_party
        if notice.state != ThirdPartyNotice.State.PENDING or not party.contact_email:
            return False
        request = notice.request
        identity = request.identity
        subject, ask = _ASKS["opt_out" if request.type_rules.is_opt_out else "deletion"]
        what = ", ".join(p.name for p in request.purposes.all()) or str(request.type_rules.label)
        send_mail(
            subject.format(ref=request.reference),
            ask.format(what=what) + "\n\n"
            f"Reference: {request.reference}\nEmail: {identity.email}\n"
            + (f"Customer number: {identity.account_number}\n" if identity.account_number else "")
            + "\nWhen it is done (or if it cannot be done), say so here: "
            f"{settings.SITE_URL}/third-parties/confirm/{confirm_token(notice.pk)}/\n"
            f"(the link works for {settings.THIRD_PARTY_LINK_DAYS} days; after that, or if "
            "you prefer, reply to this email and we will record your answer)\n",
            None, [party.contact_email],
        )
        notice.state = ThirdPartyNotice.State.SENT
        notice.sent_at = timezone.now()
        notice.save()
        record_event("third_party.notified", actor=Actor.system(), request=request,
                     data={"third_party": party.name})
    return True


def do_confirm_notice(notice_id: int, *, done: bool, note: str = "",
                      actor: Actor | None = None) -> ThirdPartyNotice:
    """The third party answers through its link (actor: the system), or staff record
    the answer it gave by email, letter or phone (actor: that staff member): done, or
    impossible with a reason. The first answer stands."""
    with transaction.atomic(durable=True):
        notice = ThirdPartyNotice.objects.select_for_update(of=("self",)).select_related(
            "third_party", "request").get(pk=notice_id)
        if not notice.awaited:
            return notice
        notice.state = (ThirdPartyNotice.State.CONFIRMED if done
                        else ThirdPartyNotice.State.IMPOSSIBLE)
        notice.confirmed_at = timezone.now()
        notice.note = note
        notice.save()
        record_event("third_party.confirmed" if done else "third_party.impossible",
                     actor=actor or Actor.system(), request=notice.request,
                     data={"third_party": notice.third_party.name,
                           "recorded_by": "staff" if actor else "third party"})
    return notice
