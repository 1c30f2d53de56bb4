"""Email templates a Privacy Manager edited before rights had plain names (issue 15,
item 15) still say `type_rules.label`, the staff's legal name: the newest edited
version of each notice gets a new version that names rights as the form does
(`type_rules.plain_label`). A new version, not an edit: the history stays whole and
the manager sees what changed and why."""

import re

from django.db import migrations

LEGAL_LABEL = re.compile(r"type_rules\.label\b")


def plain_labels(apps, schema_editor):
    Version = apps.get_model("requests_app", "EmailTemplateVersion")
    for notice in Version.objects.values_list("notice", flat=True).distinct():
        newest = Version.objects.filter(notice=notice).order_by("-number").first()
        texts = (newest.subject, newest.body_text, newest.body_html)
        if newest.use_default or not any(LEGAL_LABEL.search(t) for t in texts):
            continue
        Version.objects.create(
            notice=notice, number=newest.number + 1,
            subject=LEGAL_LABEL.sub("type_rules.plain_label", newest.subject),
            body_text=LEGAL_LABEL.sub("type_rules.plain_label", newest.body_text),
            body_html=LEGAL_LABEL.sub("type_rules.plain_label", newest.body_html),
            comment="Rights named in the form's plain words (automatic update)",
            created_by_id=newest.created_by_id)


class Migration(migrations.Migration):

    dependencies = [
        ('requests_app', '0021_original_request_type'),
    ]

    operations = [
        migrations.RunPython(plain_labels, migrations.RunPython.noop),
    ]
