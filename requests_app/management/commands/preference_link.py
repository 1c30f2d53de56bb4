"""Print the signed preference-page link for an address, as a marketing email
would carry it (see requests_app/preferences/links.py for the Python API)."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email

from requests_app.preferences.links import preference_url


class Command(BaseCommand):
    help = "Print the signed link to the preference page for an email address."

    def add_arguments(self, parser):
        parser.add_argument("email")

    def handle(self, *args, email, **options):
        try:
            validate_email(email)
        except ValidationError:
            raise CommandError(f"Not an email address: {email!r}") from None
        self.stdout.write(preference_url(email))
