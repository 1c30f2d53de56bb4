"""Tamper evidence that survives the database's administrator (issue 14, item 7).

- `chain_version` on audit events: the events already written keep their plain
  SHA-256 (version 0) and keep verifying; every new event is hashed with
  HMAC-SHA256 under AUDIT_CHAIN_KEY (version 1), a key the database never holds.
- On PostgreSQL, triggers refuse TRUNCATE of the audit trail and of the consent
  ledger (row triggers never see a TRUNCATE, nor the CASCADE of a referenced
  table's).
"""

from django.db import migrations, models

from requests_app.migrations._append_only import add_truncate_triggers, drop_truncate_triggers

TABLES = ("requests_app_auditevent", "requests_app_consentrecord", "requests_app_purposenotice")


def add(apps, schema_editor):
    add_truncate_triggers(schema_editor, TABLES)


def drop(apps, schema_editor):
    drop_truncate_triggers(schema_editor, TABLES)


class Migration(migrations.Migration):

    dependencies = [
        ("requests_app", "0015_breaker_source_health"),
    ]

    operations = [
        # Existing rows: 0, plain SHA-256, as they were hashed.
        migrations.AddField(
            model_name="auditevent",
            name="chain_version",
            field=models.PositiveSmallIntegerField(default=0, verbose_name="chain version"),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="chain_version",
            field=models.PositiveSmallIntegerField(default=1, verbose_name="chain version"),
        ),
        migrations.RunPython(add, drop),
    ]
