"""Two guards every response passes through.

- PathGuardMiddleware: a path with a control character in it (a NUL byte, CR, LF,
  ESC ...) names nothing here, so it is a 404 before any view runs (PostgreSQL
  refuses NUL in text, which made such paths a 500); and an object a view (ours or
  a library's, such as django-otp's admin pages) looked up by a path parameter and
  did not find is a 404 too, not a server error.
- NoStoreMiddleware: pages and files with personal data (the staff area, the
  auditor's exports, the admin, the consumer's status, download and confirmation
  pages, the preference pages) are sent with `Cache-Control: no-store`, so no browser cache or
  shared proxy keeps a copy after the session ends.
"""

import logging
import re

from django.core.exceptions import ObjectDoesNotExist
from django.http import Http404
from django.utils.cache import add_never_cache_headers

log = logging.getLogger(__name__)

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# Path prefixes whose pages or files show someone's personal data.
NO_STORE_PREFIXES = ("/staff/", "/audit/", "/admin/", "/status/", "/download/",
                     "/verify/", "/request/sent/", "/preferences/", "/third-parties/")


class PathGuardMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if _CONTROL.search(request.path_info):
            raise Http404("No such page.")
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, ObjectDoesNotExist):
            match = getattr(request, "resolver_match", None)
            log.warning("a view found no %s: answered 404 (%s)", type(exception).__name__,
                        match.view_name if match else "-")
            raise Http404("No such object.") from exception


class NoStoreMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.path.startswith(NO_STORE_PREFIXES):
            add_never_cache_headers(response)  # no-cache, no-store, must-revalidate, private
        return response
