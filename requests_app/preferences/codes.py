"""The preference page's one-time codes, on the portal's code service
(services/codes.py): purpose "preferences", subject the hashed address.

The answer never depends on whether we know the address: a code goes to any
address asked for (an opt-out needs no account and no match), and asking too
often is answered the same way, with no email sent."""

from requests_app.services.verification import codes
from requests_app.services.notices.outbox import queue_plain

PREFERENCES = "preferences"


def send_preferences_code(request, email: str) -> bool:
    subject = codes.subject_for_email(email)
    try:
        code = codes.issue(PREFERENCES, subject)
    except codes.TooManyCodes:
        return False
    queue_plain(email, "preferences_code", code=code)
    return True


def check_preferences_code(request, email: str, typed: str) -> str | None:
    """None when the code is right; otherwise what to tell the person."""
    result = codes.check(PREFERENCES, codes.subject_for_email(email), typed)
    return None if result is codes.Result.OK else str(codes.PROBLEMS[result])
