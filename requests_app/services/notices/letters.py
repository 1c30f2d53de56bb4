"""Letters: the notices to a requester with no email address (the outbox's rows of
channel "letter", queued by outbox.queue_notice), printed and posted by staff.

A letter waits on the staff's "letters to send" page until someone marks it posted,
with the day it went (audited). It is printed from the text the outbox rendered
when its event happened; a letter holding a one-time code keeps the code only in
its sealed text (outbox._kept), from which the PDF is made when staff open it (each
opening audited, never with the code), and which is cleared once it is posted.
"""

import datetime
import json

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from requests_app.files import unseal_text
from requests_app.models import Actor, OutgoingEmail, PrivacyRequest
from requests_app.services.audit.events import record_event
from requests_app.services.notices.pdf import letter_pdf

LETTER = OutgoingEmail.Channel.LETTER


class LetterRefused(Exception):
    """A letter that cannot be marked posted (already posted, a date out of range):
    the message says why, in words."""


def letters_to_send():
    return (OutgoingEmail.objects.filter(channel=LETTER, sent_at=None)
            .select_related("request").order_by("created_at", "id"))


def letters_posted(limit: int = 50):
    return (OutgoingEmail.objects.filter(channel=LETTER).exclude(sent_at=None)
            .select_related("request", "posted_by").order_by("-sent_at", "-id")[:limit])


def _letter(letter_id: int, *, lock: bool = False) -> OutgoingEmail:
    rows = OutgoingEmail.objects.filter(channel=LETTER).select_related("request")
    if lock:
        rows = rows.select_for_update(of=("self",))
    try:
        return rows.get(pk=letter_id)
    except OutgoingEmail.DoesNotExist:
        raise LetterRefused(_("There is no such letter.")) from None


def do_open_letter(letter_id: int, *, by) -> tuple[str, bytes]:
    """(file name, PDF) of the letter as it is to be posted: with its one-time code
    while it waits (from the sealed text), audited."""
    with transaction.atomic(durable=True):
        letter = _letter(letter_id)
        parts = (json.loads(unseal_text(letter.sealed)) if letter.sealed
                 else {"subject": letter.subject, "body_text": letter.body_text})
        pdf = letter_pdf(address=letter.address, reference=letter.request.reference,
                         subject=parts["subject"], body=parts["body_text"],
                         date=timezone.localdate(letter.created_at))
        record_event("letter.opened", actor=Actor.staff(by), request=letter.request,
                     data={"letter": letter.pk, "notice": letter.notice,
                           "holds_code": bool(letter.sealed)})
    return f"{letter.request.reference}-{letter.notice}-{letter.pk}.pdf", pdf


def do_mark_posted(letter_id: int, posted_on: datetime.date, *, by) -> OutgoingEmail:
    """The letter went in the post on `posted_on`: off the page, its sealed text
    (a code) cleared, an acknowledgment counted as sent, audited with the date."""
    if posted_on > timezone.localdate():
        raise LetterRefused(_("The day it was posted cannot be in the future."))
    with transaction.atomic(durable=True):
        letter = _letter(letter_id, lock=True)
        if letter.sent_at is not None:
            raise LetterRefused(_("This letter was marked posted already, on %(day)s.")
                                % {"day": letter.posted_on.strftime("%b %-d, %Y")})
        if posted_on < timezone.localdate(letter.created_at):
            raise LetterRefused(_("The day it was posted cannot be before the letter was "
                                  "written (%(day)s).")
                                % {"day": timezone.localdate(letter.created_at)
                                   .strftime("%b %-d, %Y")})
        letter.sent_at = timezone.now()
        letter.posted_on, letter.posted_by, letter.sealed = posted_on, by, ""
        letter.attempts += 1
        letter.save(update_fields=["sent_at", "posted_on", "posted_by", "sealed", "attempts"])
        if letter.notice == "received":
            # The request's row before the audit chain's lock (as outbox.send_email).
            PrivacyRequest.objects.filter(pk=letter.request_id, acknowledged_at=None).update(
                acknowledged_at=_posted_at(posted_on, letter.sent_at))
        record_event("letter.posted", actor=Actor.staff(by), request=letter.request,
                     data={"letter": letter.pk, "notice": letter.notice,
                           "posted_on": posted_on.isoformat()})
    return letter


def _posted_at(posted_on: datetime.date, marked_at: datetime.datetime) -> datetime.datetime:
    """When the letter went: now if posted today, else the morning of the day."""
    if posted_on >= timezone.localdate(marked_at):
        return marked_at
    return timezone.make_aware(datetime.datetime.combine(posted_on, datetime.time(9)))
