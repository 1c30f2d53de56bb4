"""Emails to the consumer about their request.

Each notice is a subject / text / HTML triple in templates/emails/<notice>/. A
notice is sent once per event that caused it: running the task again (a worker
that died before acknowledging it) finds the record and sends nothing more.
"""

import logging

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from requests_app.models import Actor, AuditEvent, PrivacyRequest
from requests_app.services.audit import hash_value, record_event

log = logging.getLogger(__name__)


def render_notice(request: PrivacyRequest, notice: str) -> tuple[str, str, str]:
    context = {
        "request": request,
        "identity": request.identity,
        "status_url": f"{settings.SITE_URL}/status/?reference={request.reference}",
        "complaint_text": request.complaint_text,
    }
    subject = render_to_string(f"emails/{notice}/subject.txt", context)
    text = render_to_string(f"emails/{notice}/body.txt", context)
    html = render_to_string(f"emails/{notice}/body.html", context)
    return " ".join(subject.split()), text, html


def send_notice(request_id: int, notice: str, cause_event_id: int) -> bool:
    request = PrivacyRequest.objects.select_related("identity").get(pk=request_id)
    already = AuditEvent.objects.filter(
        request=request, action="email.sent", data__cause=cause_event_id
    ).exists()
    if already:
        return False
    if not hasattr(request, "identity"):
        log.info("request %s: notice %s not sent, identity purged", request.reference, notice)
        return False
    subject, text, html = render_notice(request, notice)
    message = EmailMultiAlternatives(subject, text, to=[request.identity.email])
    message.attach_alternative(html, "text/html")
    message.send()
    with transaction.atomic():
        record_event(
            "email.sent",
            actor=Actor.system(),
            request=request,
            data={"notice": notice, "cause": cause_event_id,
                  "to": hash_value(request.identity.email)},
        )
        if notice == "received" and request.acknowledged_at is None:
            PrivacyRequest.objects.filter(pk=request.pk).update(acknowledged_at=timezone.now())
    log.info("request %s: notice %s sent", request.reference, notice)
    return True
