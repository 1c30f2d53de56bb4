"""Walk the audit trail's hash chain, check it against the signed checkpoints kept
outside the database (AUDIT_CHECKPOINT_DIR), and name the first thing broken.

    python manage.py verify_audit_log      (exit status 1 if the trail is broken)
"""

from django.core.management.base import BaseCommand, CommandError

from requests_app.services.audit.chain import verify_chain


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain and its signed checkpoints."

    def handle(self, *args, **options):
        report = verify_chain()
        if not report.intact:
            event = report.broken_at
            if event is None:
                raise CommandError(f"The audit trail is broken: {report.problem}. "
                                   f"{report.events} events verify.")
            raise CommandError(
                f"The audit trail is broken at event {event.pk} ({event.at:%Y-%m-%d %H:%M:%S} "
                f"{event.action}): {report.problem}. {report.events} events before it verify."
            )
        self.stdout.write(f"The audit trail is intact: {report.events} events, "
                          f"head {report.head}")
        if report.newest is None:
            self.stdout.write("No signed checkpoint yet: events removed from the end "
                              "could not be noticed (they are written every "
                              "AUDIT_CHECKPOINT_MINUTES by beat).")
            return
        self.stdout.write(f"{report.checkpoints} signed checkpoints agree; the newest, of "
                          f"{report.newest.at}, vouches for event {report.newest.seq}. "
                          f"{report.unvouched} events since are not yet in a checkpoint.")
