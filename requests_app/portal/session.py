"""The portal's status session: which requests this browser opened with a valid
status code, and when. Lasts STATUS_SESSION_MINUTES per request."""

import time

from django.conf import settings

SESSION_KEY = "portal_status"


def open_status(http_request, *references: str) -> None:
    """Open these requests for this browser (one proof: a code for all of them)."""
    opened = dict(http_request.session.get(SESSION_KEY, {}))
    # A new session id on every proof, not only the first: a session id planted
    # in the browser beforehand (with a request of the planter's own opened in it)
    # must not follow the person once they prove their address.
    http_request.session.cycle_key()
    now = int(time.time())
    opened.update((reference, now) for reference in references)
    http_request.session[SESSION_KEY] = opened


def _fresh(http_request) -> dict:
    session = getattr(http_request, "session", None)
    if session is None:
        return {}
    limit = settings.STATUS_SESSION_MINUTES * 60
    opened = session.get(SESSION_KEY, {})
    fresh = {ref: at for ref, at in opened.items()
             if isinstance(at, int) and time.time() - at <= limit}
    if fresh != opened:
        session[SESSION_KEY] = fresh
    return fresh


def is_open(http_request, reference: str) -> bool:
    return reference in _fresh(http_request)


def close_all(http_request) -> None:
    http_request.session.pop(SESSION_KEY, None)


def verified_emails(http_request) -> list[str]:
    """The addresses of the requests this browser opened with a valid status code
    in this session (still fresh), lower case, without repeats."""
    references = list(_fresh(http_request))
    if not references:
        return []
    from requests_app.models import Identity

    emails = Identity.objects.filter(request__reference__in=references).values_list(
        "email", flat=True)
    return sorted({e.strip().lower() for e in emails})
