"""Create (or reset) the demo staff logins, one per role, and print them.

Used by `make run`; each run sets fresh random passwords. Refuses to run with
DEBUG off, so it can never open a production system.
"""

import secrets

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError

from requests_app.roles import sync_roles

DEMO_USERS = [
    ("manager", "Privacy Manager", True),
    ("analyst", "Privacy Analyst", False),
    ("auditor", "Auditor", False),
]


class Command(BaseCommand):
    help = "Create or reset the demo staff logins (DEBUG only) and print them."

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError("demo_staff only runs with DEBUG on; it prints passwords.")
        sync_roles()
        self.stdout.write("Demo staff logins (new passwords on every `make run`):")
        for username, role, superuser in DEMO_USERS:
            password = secrets.token_urlsafe(12)
            user, _ = User.objects.get_or_create(username=username)
            user.is_staff = True
            user.is_superuser = superuser
            user.email = f"{username}@privacy.example"
            user.set_password(password)
            user.save()
            user.groups.set([Group.objects.get(name=role)])
            self.stdout.write(f"  {role:<16} user: {username:<8} password: {password}")
