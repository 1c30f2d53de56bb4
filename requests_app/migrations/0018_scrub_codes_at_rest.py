"""Emails queued before 0017 kept the one-time code they carried in plain text (the
outbox now keeps each email with its code replaced). This replaces the code in
those rows too: an eight-digit code (services/verification/codes.py) in the
subject and bodies of the notices that carry one becomes the outbox's mark. An
email not yet sent keeps what is to be sent sealed first (as the outbox does
since 0017: `sealed`, AES-GCM under the file key), so it still goes out whole."""

import json
import re

from django.db import migrations

# The notices whose templates show a one-time code ({{ code }}).
CODE_NOTICES = ("received", "agent_confirm", "status_code", "filing_code",
                "verification_code", "preferences_code")
CODE = re.compile(r"(?<!\d)\d{8}(?!\d)")
MARK = "••••••"  # services/notices/outbox.HIDDEN["code"]


def scrub(apps, schema_editor=None) -> int:
    """Replace the codes; returns how many emails were changed."""
    from requests_app.files import seal_text

    OutgoingEmail = apps.get_model("requests_app", "OutgoingEmail")
    changed = 0
    for email in OutgoingEmail.objects.filter(notice__in=CODE_NOTICES, sealed="").iterator():
        sent = {name: getattr(email, name) for name in ("subject", "body_text", "body_html")}
        parts = {name: CODE.sub(MARK, text) for name, text in sent.items()}
        if parts == sent:
            continue
        if email.sent_at is None:  # to be sent as it was written
            parts["sealed"] = seal_text(json.dumps(sent))
        OutgoingEmail.objects.filter(pk=email.pk).update(**parts)
        changed += 1
    return changed


class Migration(migrations.Migration):

    dependencies = [
        ("requests_app", "0017_inout_outbox_sealed"),
    ]

    operations = [migrations.RunPython(scrub, migrations.RunPython.noop)]
