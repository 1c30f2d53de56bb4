"""Walk the audit trail's hash chain and name the first broken event.

    python manage.py verify_audit_log      (exit status 1 if the chain is broken)
"""

from django.core.management.base import BaseCommand, CommandError

from requests_app.services.audit.chain import verify_chain


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain."

    def handle(self, *args, **options):
        report = verify_chain()
        if not report.intact:
            event = report.broken_at
            raise CommandError(
                f"The audit trail is broken at event {event.pk} ({event.at:%Y-%m-%d %H:%M:%S} "
                f"{event.action}): {report.problem}. {report.events} events before it verify."
            )
        self.stdout.write(f"The audit trail is intact: {report.events} events, "
                          f"head {report.head}")
