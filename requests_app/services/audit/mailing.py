"""The daily email of the audit trail's checkpoints to the auditors: a copy of the
day's signed checkpoints in mailboxes the database's administrator does not hold."""

import datetime

from django.conf import settings
from django.contrib.auth.models import User
from django.core.mail import EmailMessage

from requests_app.services.audit import checkpoints

AUDITOR_GROUP = "Auditor"


def auditors() -> list[str]:
    """Active members of the Auditor role with an email, and AUDIT_CHECKPOINT_EMAILS
    (an outside auditor, say)."""
    members = (User.objects.filter(is_active=True, groups__name=AUDITOR_GROUP)
               .exclude(email="").values_list("email", flat=True).distinct())
    return sorted(set(members) | set(settings.AUDIT_CHECKPOINT_EMAILS))


def email_checkpoints(day: str, verdict: str) -> int:
    """Send the checkpoint file of `day` (YYYY-MM-DD) with the night's verdict on
    the chain; returns the number of recipients (0: nobody to send to)."""
    recipients = auditors()
    if not recipients:
        return 0
    path = checkpoints.day_file(datetime.date.fromisoformat(day))
    body = (
        f"The audit trail's signed checkpoints of {day} (UTC) are attached: keep this "
        "email. Each line records the chain's newest event, its hash and the number of "
        "events at that time, signed with Ed25519.\n\n"
        f"Tonight's verification: {verdict}\n\n"
        f"Public key (URL-safe base64, raw Ed25519): {checkpoints.public_key()}\n"
        "To check the trail against these lines, put them in AUDIT_CHECKPOINT_DIR and "
        "run `manage.py verify_audit_log` (docs/audit.md).\n"
    )
    message = EmailMessage(f"Audit trail checkpoints {day}", body, None, recipients)
    if path.exists():
        message.attach(path.name, path.read_bytes(), "application/jsonl")
    else:
        message.body += "\nNo checkpoint was written that day.\n"
    message.send()
    return len(recipients)
