"""Print the signed preference-page link for an address, as a marketing email
would carry it (see requests_app/preferences/links.py for the Python API).

With --csv, read addresses from standard input (one a line) and write a CSV for a
mail merge: address, preference link, and the List-Unsubscribe header (RFC 8058);
lines that are not addresses are reported on standard error and skipped."""

import csv as csv_module
import sys

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email

from requests_app import csvcells
from requests_app.preferences.links import preference_url, unsubscribe_headers


def _valid(email: str) -> bool:
    try:
        validate_email(email)
    except ValidationError:
        return False
    return True


class Command(BaseCommand):
    help = ("Print the signed link to the preference page for an email address, or "
            "(--csv) a mail-merge CSV of links for addresses read from standard input.")

    def add_arguments(self, parser):
        parser.add_argument("email", nargs="?")
        parser.add_argument("--csv", action="store_true",
                            help="read addresses from standard input, write CSV")

    def handle(self, *args, email, csv: bool, **options):
        if csv:
            return self._mail_merge()
        if not email:
            raise CommandError("Give an email address, or --csv with addresses on stdin.")
        if not _valid(email):
            raise CommandError(f"Not an email address: {email!r}")
        self.stdout.write(preference_url(email))

    def _mail_merge(self) -> None:
        writer = csv_writer(self.stdout)
        writer.writerow(["email", "preference_link", "list_unsubscribe",
                         "list_unsubscribe_post"])
        skipped = 0
        for number, line in enumerate(sys.stdin, start=1):
            email = line.strip()
            if not email:
                continue
            if not _valid(email):
                skipped += 1
                self.stderr.write(f"line {number}: not an email address, skipped")
                continue
            headers = unsubscribe_headers(email)
            writer.writerow([email, preference_url(email), headers["List-Unsubscribe"],
                             headers["List-Unsubscribe-Post"]])
        if skipped:
            self.stderr.write(f"{skipped} line(s) skipped")


class _SafeWriter:
    """csv.writer whose cells are neutralised as every CSV of ours (csvcells)."""

    def __init__(self, stream):
        self._writer = csv_module.writer(stream, lineterminator="\n")

    def writerow(self, values):
        self._writer.writerow([csvcells.cell(v) for v in values])


def csv_writer(stream):
    return _SafeWriter(stream)
