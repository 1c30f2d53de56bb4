"""Global Privacy Control (https://globalprivacycontrol.org): a browser that sends
`Sec-GPC: 1` to the portal has opted out of the sale and sharing of personal
information. The middleware records that opt-out for the browser (a random id in
a cookie, hashed in the ledger, recorded from the second request on, once the
browser has shown it keeps the cookie) and, when the visit is tied to a person (a
preference-page session or a request opened on the status page with a code),
for the person too, which also tells the sources. Either
is recorded once per purpose: a "yes" given afterwards stands.
Templates say plainly that the signal was honoured (`request.gpc`)."""

import secrets

from django.conf import settings

from requests_app.models import Actor
from requests_app.services.consent import ledger as consent
from requests_app.services.preferences import choices

BROWSER_COOKIE = "pp_browser"
# Where the signal is not about the consumer's choices.
_NOT_PORTAL = ("/staff/", "/admin/", "/audit/", "/api/", "/static/", "/healthz",
               "/third-parties/")


def tied_people(request) -> list[str]:
    """The addresses the visit has proved control of: a preference-page session
    (signed link or code) and the requests opened on the status page with a code."""
    from requests_app.portal.session import verified_emails
    from requests_app.preferences.session import session_email

    emails = set(verified_emails(request))
    preference = session_email(request)
    if preference:
        emails.add(preference.strip().lower())
    return sorted(emails)


def honour_for_person(request) -> None:
    """Record the signal for the people the visit is tied to, once per request. The
    middleware does it once the page is answered without an error; a page that
    shows the person's choices calls it first, so that they show as they now stand."""
    emails = getattr(request, "_gpc_people", None) or []
    request._gpc_people = []
    for email in emails:
        choices.withdraw_everything(email, method=consent.Method.GPC,
                                    actor=Actor.consumer(), gpc_only=True)


class GlobalPrivacyControlMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.gpc = None
        if request.headers.get("Sec-GPC", "").strip() != "1" or request.path.startswith(
                _NOT_PORTAL):
            return self.get_response(request)
        emails = tied_people(request)
        request._gpc_people = emails
        request.gpc = {"honoured": True, "person": bool(emails)}
        response = self.get_response(request)
        if response.status_code < 400:
            # Nothing is recorded on an error page (a page that does not exist, a
            # refused link, a 429, a crash): only a visit that was answered.
            honour_for_person(request)
        browser_id = request.COOKIES.get(BROWSER_COOKIE, "")
        if not (len(browser_id) == 32 and browser_id.isalnum()):
            # A browser is recorded once it returns its id: clients that keep no
            # cookies (crawlers, one-off fetches) would otherwise fill the
            # append-only ledger with a new "browser" per request.
            response.set_cookie(BROWSER_COOKIE, secrets.token_hex(16), max_age=365 * 86400,
                                httponly=True, secure=settings.SESSION_COOKIE_SECURE,
                                samesite="Lax")
        elif response.status_code < 400:
            consent.honour_gpc_for_browser(consent.browser(browser_id), actor=Actor.consumer())
        return response


def gpc(request) -> dict:
    """Context processor: `gpc` for templates."""
    return {"gpc": getattr(request, "gpc", None)}
