"""Create (or reset) the demo staff logins, one per role, and print them.

Used by `make run`; each run sets fresh random passwords and keeps each login's
authenticator (TOTP) device, so an app set up once keeps working. Every staff
login asks for a code: add the printed secret to an authenticator app, or print
the current codes with `manage.py demo_staff --codes`. Refuses to run with DEBUG
off, so it can never open a production system.
"""

import secrets

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from requests_app.management.commands.staff_totp import new_device, secret_of
from requests_app.roles import sync_roles

DEMO_USERS = [
    ("manager", "Privacy Manager", True),
    ("analyst", "Privacy Analyst", False),
    ("auditor", "Auditor", False),
    ("owner", "Source Owner", False),
]


def current_code(device: TOTPDevice) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    return f"{totp.token():0{device.digits}d}"


class Command(BaseCommand):
    help = "Create or reset the demo staff logins (DEBUG only) and print them."

    def add_arguments(self, parser):
        parser.add_argument("--codes", action="store_true",
                            help="only print each demo login's current TOTP code")

    def handle(self, *args, codes=False, **options):
        if not settings.DEBUG:
            raise CommandError("demo_staff only runs with DEBUG on; it prints passwords.")
        if codes:
            for username, _role, _superuser in DEMO_USERS:
                device = TOTPDevice.objects.filter(user__username=username,
                                                   confirmed=True).first()
                if device is not None:
                    self.stdout.write(f"  {username:<8} code now: {current_code(device)}")
            return
        sync_roles()
        self.stdout.write("Demo staff logins at /staff/login/ (new passwords on every "
                          "`make run`; the code comes from an authenticator app):")
        for username, role, superuser in DEMO_USERS:
            password = secrets.token_urlsafe(12)
            user, _ = User.objects.get_or_create(username=username)
            user.is_staff = True
            user.is_superuser = superuser
            user.email = f"{username}@privacy.example"
            user.set_password(password)
            user.save()
            user.groups.set([Group.objects.get(name=role)])
            device = (TOTPDevice.objects.filter(user=user, confirmed=True).first()
                      or new_device(user))
            self.stdout.write(f"  {role:<16} user: {username:<8} password: {password}  "
                              f"TOTP secret: {secret_of(device)}")
            self.stdout.write(f"  {'':<16} {device.config_url}")
        self.stdout.write("No authenticator app at hand? `.venv/bin/python manage.py demo_staff "
                          "--codes` prints the codes valid now.")
