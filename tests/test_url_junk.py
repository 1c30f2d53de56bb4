"""Junk in a URL's path parameters (NUL bytes, other control characters, numbers
too large for the database, very long values) is a 404, never a server error: on
every route that has a parameter, read from the resolver, so a new route is
covered by itself. Logged in as a Privacy Manager (the pages behind the login do
the most with their parameters), and once more with no login at all."""

import re
from urllib.parse import quote

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from tests.conftest import staff_login

pytestmark = pytest.mark.django_db

# Per converter, values that match its pattern but mean nothing; the str and path
# converters take anything, so they get everything.
JUNK_TEXT = ["\x00abc", "\x00", "a\x00b", "\r\nSet-Cookie: x=1", "\x1b[31m", "\x7f", "\ud800",
             "x" * 5000, "' OR 1=1 --"]
JUNK = {
    "str": JUNK_TEXT,
    "path": JUNK_TEXT + ["a/\x00/b"],
    "slug": ["x" * 5000, "-", "_"],
    "int": ["0", "9" * 30, str(2**31), str(2**63), "00000000001"],
}
METHODS = ("get", "post")


def _routes(resolver=None, prefix=""):
    """(route text, {parameter: converter name}) for every pattern with a parameter."""
    resolver = resolver or get_resolver()
    for pattern in resolver.url_patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from _routes(pattern, route)
        elif isinstance(pattern, URLPattern) and "<" in route:
            yield route, {name: kind for kind, name in
                          re.findall(r"<(?:(\w+):)?(\w+)>", route)}


def _fill(route: str, values: dict) -> str:
    def value(match):
        return quote(values[match.group(2)].encode("utf-8", "surrogatepass"), safe="")
    return "/" + re.sub(r"<(?:(\w+):)?(\w+)>", value, route).lstrip("^").rstrip("$")


def _cases():
    """Each route, with each junk value in one parameter and a plain one elsewhere."""
    for route, params in _routes():
        for name, kind in params.items():
            for junk in JUNK[kind or "str"]:
                values = {other: ("1" if k == "int" else "x") for other, k in params.items()}
                values[name] = junk
                yield route, _fill(route, values)


def test_every_route_with_a_parameter_is_walked():
    routes = {route for route, _params in _routes()}
    for expected in ("api/sources/callback/<str:token>/", "staff/requests/<str:reference>/",
                     "staff/tasks/<str:token>/", "download/<str:token>/",
                     "audit/metrics/<int:year>/"):
        assert expected in routes
    assert len(routes) >= 15


@pytest.mark.parametrize("login", ["manager", "nobody"])
def test_junk_in_any_path_parameter_is_never_a_server_error(client, alice, login):
    if login == "manager":
        staff_login(client, alice)
    client.raise_request_exception = False
    errors = []
    for route, url in _cases():
        for method in METHODS:
            response = getattr(client, method)(url)
            if response.status_code >= 500:
                errors.append((method, route, url[:80], response.status_code))
    assert errors == []


@pytest.mark.parametrize("url", ["/api/sources/callback/%00abc/", "/staff/requests/%00/",
                                 "/staff/tasks/%00zz/", "/status/%00/", "/download/%00/"])
def test_a_nul_byte_in_the_path_is_not_found(client, alice, url):
    staff_login(client, alice)
    assert client.get(url).status_code == 404
    assert client.post(url).status_code == 404
