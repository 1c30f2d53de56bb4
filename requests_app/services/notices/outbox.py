"""Notices to the consumer about their request: emails, and letters to a requester
with no email address (services/notices/letters.py prints and posts them).

Each notice is a subject / text / HTML triple in templates/emails/<notice>/. A
Privacy Manager may edit it in the staff area: the newest EmailTemplateVersion of
the notice then overrides the files (services/notices/templates.py). It is rendered
inside the transaction of the event that causes it and stored in the outbox
(OutgoingEmail, with the version that was used); a worker sends it after the commit.
A one-time code never rests there in plain text: the row keeps the email with the
code replaced, and the email as sent is sealed (encrypted) until it is sent.
"""

import json
import logging

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from requests_app.files import seal_text, unseal_text
from requests_app.models import Actor, OutgoingEmail, PrivacyRequest
from requests_app.services.audit.events import hash_value, record_event
from requests_app.services.notices import templates as email_templates
from requests_app.services.notices.templates import notice_context
from requests_app.services.queue import enqueue_on_commit

SEND_EMAIL = "requests_app.services.notices.tasks.send_email"

log = logging.getLogger(__name__)


def render_notice(request: PrivacyRequest, notice: str, **extra) -> tuple[str, str, str]:
    return render_notice_versioned(request, notice, **extra)[:3]


def render_notice_versioned(request: PrivacyRequest, notice: str,
                            **extra) -> tuple[str, str, str, str]:
    """subject, text, HTML and the label of the template version used."""
    context = notice_context(request, **extra)
    version = email_templates.current_version(notice)
    if version is not None and not version.use_default:
        subject, text, html = email_templates.render_version(version, context)
        return subject, text, html, version.label
    subject = render_to_string(f"emails/{notice}/subject.txt", context)
    text = render_to_string(f"emails/{notice}/body.txt", context)
    html = render_to_string(f"emails/{notice}/body.html", context)
    return " ".join(subject.split()), text, html, "default"


def queue_notice(request: PrivacyRequest, notice: str, cause=None, **extra) -> OutgoingEmail | None:
    """Render the notice now and send it once the current transaction commits: by
    email, or, to a requester with no email address, as a letter staff post."""
    if not hasattr(request, "identity"):
        log.info("request %s: notice %s not queued, identity purged", request.reference, notice)
        return None
    identity = request.identity
    letter = not identity.email
    if letter and not identity.postal_address.strip():
        # No address of either kind (a request from before letters, or its address
        # purged): staff reach the person by phone; the trail says what was not sent.
        record_event("notice.not_emailed", actor=Actor.system(), request=request,
                     reason="no email or postal address", data={"notice": notice})
        return None
    sent = render_notice_versioned(request, notice, **extra)
    (subject, text, html), sealed = _kept(
        lambda context: render_notice_versioned(request, notice, **context)[:3], extra,
        sent[:3])
    email = OutgoingEmail.objects.create(
        request=request, notice=notice, cause=cause, subject=subject, body_text=text,
        body_html=html, template_version=sent[3], sealed=sealed,
        **({"channel": OutgoingEmail.Channel.LETTER, "to": "",
            "address": f"{identity.name}\n{identity.postal_address.strip()}".strip()}
           if letter else {"to": identity.email}))
    if letter:
        # Nothing to send by a worker: it waits on the staff's "letters to send" page.
        record_event("notice.letter_queued", actor=Actor.system(), request=request,
                     data={"notice": notice, "letter": email.pk})
    else:
        enqueue_on_commit(SEND_EMAIL, email.pk)
    return email


def queue_plain(to: str, notice: str, *, folder: str = "emails", **context) -> OutgoingEmail:
    """An email about no request (a preference-page code; to staff, from the folder
    staff_emails), through the same outbox: rendered now, sent after the commit,
    re-sent by the reconciler if lost."""
    context = {"site_url": settings.SITE_URL, **context}

    def render(context):
        return (" ".join(render_to_string(f"{folder}/{notice}/subject.txt", context).split()),
                render_to_string(f"{folder}/{notice}/body.txt", context),
                render_to_string(f"{folder}/{notice}/body.html", context))

    (subject, text, html), sealed = _kept(render, context, render(context))
    email = OutgoingEmail.objects.create(request=None, notice=notice, to=to, subject=subject,
                                         body_text=text, body_html=html, sealed=sealed)
    enqueue_on_commit(SEND_EMAIL, email.pk)
    return email


# What a notice's context may hold that opens something for whoever reads it: the
# outbox keeps the email with these in its place (and the desk shows that).
HIDDEN = {"code": "••••••", "download_url": "[download link, not kept]"}


def _kept(render, context: dict, sent: tuple) -> tuple[tuple, str]:
    """(subject, text and HTML the outbox keeps, the email to send, sealed): with a
    one-time code or a link in the context, the email is rendered again with each
    replaced, and the one to send is encrypted until it is sent."""
    hidden = {name: shown for name, shown in HIDDEN.items() if context.get(name)}
    if not hidden:
        return sent, ""
    kept = render({**context, **hidden})
    return kept, seal_text(json.dumps(dict(zip(_PARTS, sent))))


_PARTS = ("subject", "body_text", "body_html")


def send_email(email_id: int) -> bool:
    """Send one outbox email, at most once: the row stays locked while it is sent,
    so a second delivery of the same task waits, then finds it sent."""
    with transaction.atomic():
        email = OutgoingEmail.objects.select_for_update(of=("self",)).select_related("request").get(
            pk=email_id)
        if email.sent_at is not None or email.channel != OutgoingEmail.Channel.EMAIL:
            return False
        # An email with a one-time code is sent as sealed, and the seal goes with it.
        parts = (json.loads(unseal_text(email.sealed)) if email.sealed
                 else {part: getattr(email, part) for part in _PARTS})
        message = EmailMultiAlternatives(parts["subject"], parts["body_text"], to=[email.to])
        message.attach_alternative(parts["body_html"], "text/html")
        message.send()
        email.sent_at = timezone.now()
        email.attempts += 1
        email.sealed = ""
        email.save(update_fields=["sent_at", "attempts", "sealed"])
        if email.notice == "received" and email.request_id:
            # The request's row before the audit chain's lock, as every transition
            # takes them (row, then chain): the other order deadlocked with a
            # concurrent approval (tests/faults, test_redis_stopped_...).
            PrivacyRequest.objects.filter(pk=email.request_id, acknowledged_at=None).update(
                acknowledged_at=email.sent_at)
        record_event(
            "email.sent",
            actor=Actor.system(),
            request=email.request,
            data={"notice": email.notice, "email": email.pk, "to": hash_value(email.to)},
        )
    log.info("request %s: notice %s sent",
             email.request.reference if email.request_id else "-", email.notice)
    return True
