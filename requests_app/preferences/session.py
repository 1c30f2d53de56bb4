"""The preference page's session: the address a visitor proved control of (by a
signed link or a code), how, and since when; it lapses after
PREFERENCE_SESSION_MINUTES."""

import time

from django.conf import settings

SESSION_EMAIL = "preferences_email"
SESSION_METHOD = "preferences_method"
SESSION_SINCE = "preferences_since"


def open_session(request, email: str, method: str) -> None:
    request.session.cycle_key()  # a new session id once the address is proved
    request.session[SESSION_EMAIL] = email
    request.session[SESSION_METHOD] = method
    request.session[SESSION_SINCE] = int(time.time())


def session_email(request) -> str | None:
    session = getattr(request, "session", None)
    if session is None or SESSION_EMAIL not in session:
        return None
    if time.time() - session.get(SESSION_SINCE, 0) > settings.PREFERENCE_SESSION_MINUTES * 60:
        for key in (SESSION_EMAIL, SESSION_METHOD, SESSION_SINCE):
            session.pop(key, None)
        return None
    return session[SESSION_EMAIL]
