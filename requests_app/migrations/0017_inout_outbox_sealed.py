from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('requests_app', '0016_tamper_audit_keyed_chain'),
    ]

    operations = [
        migrations.AddField(
            model_name='outgoingemail',
            name='sealed',
            field=models.TextField(blank=True, default=''),
        ),
    ]
