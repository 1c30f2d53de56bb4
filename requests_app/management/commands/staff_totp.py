"""Set up (or replace) a staff member's authenticator (TOTP) and print what their
app needs: the otpauth:// URI, a QR code of it in the terminal, and the secret.

    manage.py staff_totp alice            # a new device, replacing any old one
    manage.py staff_totp alice --no-qr

Every staff login asks for a code from this device. Run it for a new staff member
or one who lost their phone; it is audited.
"""

import base64

import segno
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django_otp.plugins.otp_totp.models import TOTPDevice

from requests_app.models import Actor
from requests_app.services.audit.events import record_event


def new_device(user) -> TOTPDevice:
    TOTPDevice.objects.filter(user=user).delete()
    return TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)


def secret_of(device: TOTPDevice) -> str:
    return base64.b32encode(device.bin_key).decode()


class Command(BaseCommand):
    help = "Set up a staff member's authenticator app (TOTP) and print its secret."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--no-qr", action="store_true", help="print no QR code")

    def handle(self, *args, username, no_qr, **options):
        user = get_user_model().objects.filter(username=username, is_staff=True).first()
        if user is None:
            raise CommandError(f"There is no staff user {username!r}.")
        device = new_device(user)
        record_event("config.totp_device_set", actor=Actor.system(),
                     data={"user": user.get_username()})
        self.stdout.write(f"Authenticator for {username}: add it in the app (scan or type).")
        self.stdout.write(f"  secret (base32): {secret_of(device)}")
        self.stdout.write(f"  URI: {device.config_url}")
        if not no_qr:
            segno.make(device.config_url).terminal(out=self.stdout, compact=True)
