"""Identity.email_hash: the keyed hash repeat requests are counted by, filled in for
the identities already held."""

from django.db import migrations, models


def fill(apps, schema_editor):
    from requests_app.services.audit.events import hash_value

    Identity = apps.get_model("requests_app", "Identity")
    for identity in Identity.objects.exclude(email="").only("pk", "email").iterator():
        Identity.objects.filter(pk=identity.pk).update(email_hash=hash_value(identity.email))


class Migration(migrations.Migration):
    dependencies = [("requests_app", "0018_scrub_codes_at_rest")]

    operations = [
        migrations.AddField(
            model_name="identity",
            name="email_hash",
            field=models.CharField(blank=True, db_index=True, editable=False, max_length=32,
                                   verbose_name="email hash"),
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]
