"""Signed preference links, for the marketing emails a company sends.

A link carries the address encrypted and authenticated (AES-GCM, with a key
derived from SECRET_KEY), so that it can be neither read from a URL log nor
changed, and it expires after PREFERENCE_LINK_MAX_AGE_DAYS.

    from requests_app.preferences.links import preference_url
    preference_url("pat@example.com")   # https://privacy.example.com/preferences/link/...

or `manage.py preference_link pat@example.com`.
"""

import base64
import binascii
import hashlib
import json
import os
import time

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email


class LinkInvalid(Exception):
    """Tampered with, cut short, or made with another key."""


class LinkExpired(Exception):
    pass


_AAD = b"privacy-portal preference link v1"
# What a token opens. An unsubscribe token sits in the List-Unsubscribe header,
# where mail providers and scanners read it: it must not open the preference page,
# where a "yes" could be given in the person's name.
MANAGE, UNSUBSCRIBE = "manage", "unsubscribe"


def _aad(purpose: str) -> bytes:
    if purpose not in (MANAGE, UNSUBSCRIBE):
        raise ValueError(f"no such link purpose: {purpose}")
    return _AAD + b"\0" + purpose.encode()


def _key() -> bytes:
    return hashlib.sha256(b"preference-links\0" + settings.SECRET_KEY.encode()).digest()


def make_token(email: str, *, purpose: str = MANAGE, issued_at: float | None = None) -> str:
    validate_email(email.strip())  # ValidationError: a link for no address is a bug
    nonce = os.urandom(12)
    payload = json.dumps({"e": email.strip(), "t": int(issued_at or time.time())}).encode()
    sealed = nonce + AESGCM(_key()).encrypt(nonce, payload, _aad(purpose))
    return base64.urlsafe_b64encode(sealed).decode().rstrip("=")


def read_token(token: str, *, purpose: str = MANAGE) -> str:
    """The address a token was made for `purpose`; LinkInvalid (also for a token
    made for another purpose) or LinkExpired otherwise."""
    try:
        sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(AESGCM(_key()).decrypt(sealed[:12], sealed[12:], _aad(purpose)))
        email, issued = str(payload["e"]), int(payload["t"])
        validate_email(email)
    except (binascii.Error, ValueError, InvalidTag, KeyError, TypeError, ValidationError):
        raise LinkInvalid from None
    if time.time() - issued > settings.PREFERENCE_LINK_MAX_AGE_DAYS * 86400:
        raise LinkExpired
    return email


def preference_url(email: str) -> str:
    return f"{settings.SITE_URL}/preferences/link/{make_token(email)}/"


def unsubscribe_headers(email: str) -> dict[str, str]:
    """The headers a marketing email carries for one-click unsubscribe (RFC 8058):
    mail providers show an "Unsubscribe" button that posts to the link."""
    return {"List-Unsubscribe": f"<{settings.SITE_URL}/preferences/unsubscribe/"
                                f"{make_token(email, purpose=UNSUBSCRIBE)}/>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
