"""HTTP sources against the real demo service on 127.0.0.1 (no mocks)."""

import json
import queue
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from requests_app.models import DataSource, PrivacyRequest, SourceRun
from requests_app.sources.base import IdentityData, SourceError, TransientSourceError
from requests_app.sources.demo_http import PATH, DemoHttpService, seed
from requests_app.sources.http import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    HttpConnector,
    apply_reply,
    sign,
    verify_signature,
)

SECRET = "test-shared-secret"
SECRET_ENV = "PP_TEST_HTTP_SECRET"
WEIRD = "O'Brien%_\u00e9\u6771@example.com"
PEOPLE = ["pat.doe@example.com", "sam.lee@example.com", WEIRD]


class ListSink:
    def __init__(self):
        self.writes = []

    def write(self, collection, record, categories):
        self.writes.append((collection, record, categories))


class Receiver:
    """A tiny local HTTP server that records what it is sent and answers `status`."""

    def __init__(self, status=200, headers=None):
        self.received = queue.Queue()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.received.put((self.path, self.headers, body))
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def service(tmp_path, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, SECRET)
    seed(tmp_path / "records.json", PEOPLE)
    svc = DemoHttpService(tmp_path / "records.json", secret=SECRET)
    svc.url = f"http://127.0.0.1:{svc.start()}"
    yield svc
    svc.stop()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def make_source(url, **extra) -> DataSource:
    return DataSource(name="Loyalty & chat", kind="http", url=url, secret_env=SECRET_ENV,
                      timeout_seconds=extra.pop("timeout_seconds", 5), **extra)


def make_run(source, action="gather") -> SourceRun:
    request = PrivacyRequest(reference="PP-TEST-0000-0000-0001")
    return SourceRun(request=request, source=source, action=action)


def identity(email="pat.doe@example.com") -> IdentityData:
    return IdentityData(email=email, name='Pat "the cat" O\'Doe', phone="+1 555 0100")


def assert_no_identity(exc, who: IdentityData):
    message = str(exc)
    for value in who.as_dict().values():
        assert not value or value.lower() not in message.lower()


def test_gather_writes_records_to_the_sink(service):
    sink, who = ListSink(), identity("PAT.Doe@Example.com")  # case-insensitive match
    source = make_source(service.url + PATH)
    outcome = HttpConnector(source).gather(make_run(source), who, sink)
    assert not outcome.waiting
    assert outcome.records == len(sink.writes) >= 1
    assert sum(outcome.result["collections"].values()) == outcome.records
    for collection, record, categories in sink.writes:
        assert record["email"] == "pat.doe@example.com"
        assert set(record) <= set(categories)
        assert categories["email"] == "user.contact.email"
    assert {c for c, _, _ in sink.writes} <= {"loyalty_points", "chat_messages"}


def test_match_by_account_number(service):
    sink = ListSink()
    source = make_source(service.url + PATH)
    HttpConnector(source).gather(make_run(source), identity("pat.doe@example.com"), sink)
    account = next(r["account_number"] for c, r, _ in sink.writes if c == "loyalty_points")
    other = ListSink()
    outcome = HttpConnector(source).gather(
        make_run(source), IdentityData(email="unknown@example.com", account_number=account), other)
    assert outcome.records == len(sink.writes)
    assert sorted(map(str, other.writes)) == sorted(map(str, sink.writes))


def test_unicode_and_quotes_round_trip_exactly(service):
    sink, who = ListSink(), IdentityData(email=WEIRD, name="Zo\u00eb \"Q\" 100%_")
    source = make_source(service.url + PATH)
    outcome = HttpConnector(source).gather(make_run(source), who, sink)
    assert outcome.records >= 1
    assert all(record["email"] == WEIRD for _, record, _ in sink.writes)


def test_bad_signature_is_refused(service, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, "not-the-secret")
    who = identity()
    source = make_source(service.url + PATH)
    with pytest.raises(SourceError, match="401") as caught:
        HttpConnector(source).gather(make_run(source), who, ListSink())
    assert not isinstance(caught.value, TransientSourceError)
    assert_no_identity(caught.value, who)
    # and unsigned requests too
    assert requests.post(service.url + PATH, json={"action": "gather"}, timeout=5).status_code == 401


def test_missing_secret_names_the_variable(service, monkeypatch):
    monkeypatch.delenv(SECRET_ENV)
    source = make_source(service.url + PATH)
    with pytest.raises(SourceError, match=SECRET_ENV) as caught:
        HttpConnector(source).gather(make_run(source), identity(), ListSink())
    assert SECRET not in str(caught.value)


def test_server_error_is_transient(service):
    assert requests.post(service.url + "/_control", json={"mode": "fail500"},
                         timeout=5).status_code == 200
    who, source = identity(WEIRD), make_source(service.url + PATH)
    with pytest.raises(TransientSourceError, match="500") as caught:
        HttpConnector(source).gather(make_run(source), who, ListSink())
    assert_no_identity(caught.value, who)


def test_timeout_is_transient(service):
    service.set_mode("timeout")
    who, source = identity(), make_source(service.url + PATH, timeout_seconds=1)
    started = time.monotonic()
    with pytest.raises(TransientSourceError, match="no answer within 1 s") as caught:
        HttpConnector(source).gather(make_run(source), who, ListSink())
    assert time.monotonic() - started < 5
    assert_no_identity(caught.value, who)


def test_connection_refused_is_transient(monkeypatch):
    monkeypatch.setenv(SECRET_ENV, SECRET)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    source = make_source(f"http://127.0.0.1:{port}{PATH}")
    with pytest.raises(TransientSourceError, match="connection failed"):
        HttpConnector(source).plan_erasure(make_run(source, "plan_erasure"), identity())


def test_not_found_is_permanent(service):
    who, source = identity(), make_source(service.url + "/no-such-path")
    with pytest.raises(SourceError, match="404") as caught:
        HttpConnector(source).gather(make_run(source), who, ListSink())
    assert not isinstance(caught.value, TransientSourceError)
    assert_no_identity(caught.value, who)


def test_redirect_is_not_followed(service):
    redirector = Receiver(status=302, headers={"Location": service.url + PATH})
    try:
        source = make_source(redirector.url + PATH)
        with pytest.raises(SourceError, match="302"):
            HttpConnector(source).gather(make_run(source), identity(), ListSink())
    finally:
        redirector.close()


def test_async_reply_arrives_signed_at_the_callback(service, receiver, settings):
    settings.SITE_URL = receiver.url
    service.set_mode("async")
    who, source = identity(WEIRD), make_source(service.url + PATH)
    run = make_run(source)
    assert HttpConnector(source).gather(run, who, ListSink()).waiting

    path, headers, body = receiver.received.get(timeout=5)
    assert path == f"/api/sources/callback/{run.token}/"
    assert verify_signature(SECRET.encode(), headers[TIMESTAMP_HEADER], body,
                            headers[SIGNATURE_HEADER])
    assert not verify_signature(b"other", headers[TIMESTAMP_HEADER], body,
                                headers[SIGNATURE_HEADER])
    sink = ListSink()
    outcome = apply_reply(run, who, json.loads(body), sink)
    assert outcome.records == len(sink.writes) >= 1
    assert all(record["email"] == WEIRD for _, record, _ in sink.writes)


def test_plan_erase_then_nothing_remains(service):
    source = make_source(service.url + PATH)
    http, who = HttpConnector(source), identity()
    plan = http.plan_erasure(make_run(source, "plan_erasure"), who).result
    assert plan["delete"] >= 1 and plan["retain"] == 0 and isinstance(plan["legal_basis"], str)

    erase_run = make_run(source, "erase")
    assert http.erase(erase_run, who, plan).records == plan["delete"]
    assert http.remaining(erase_run, who) == 0
    assert http.erase(erase_run, who, plan).records == 0  # idempotent
    assert http.remaining(erase_run, identity("sam.lee@example.com")) >= 1  # others untouched
    stored = json.loads(service.data_path.read_text(encoding="utf-8"))
    assert "pat.doe@example.com" not in json.dumps(stored)


@pytest.mark.parametrize("action", ["correct", "opt_out"])
def test_changes_are_applied(service, action):
    source = make_source(service.url + PATH)
    outcome = HttpConnector(source).apply_change(make_run(source, action), identity(),
                                                 {"email": "pat.doe@example.com"})
    assert outcome.result == {"applied": True}


@pytest.mark.parametrize("body", [
    [],
    {"collections": []},
    {"collections": {"c": {"categories": {"email": "not.a.category"},
                           "records": [{"email": "pat.doe@example.com"}]}}},
    {"collections": {"c": {"categories": {}, "records": [{"email": "pat.doe@example.com"}]}}},
    {"collections": {"c": {"categories": {"email": "user.contact.email"},
                           "records": ["pat.doe@example.com"]}}},
])
def test_malformed_gather_replies_are_refused_without_values(body):
    run, sink = make_run(make_source("http://127.0.0.1:9/")), ListSink()
    with pytest.raises(SourceError) as caught:
        apply_reply(run, identity(), body, sink)
    assert sink.writes == []
    assert_no_identity(caught.value, identity())
    assert "not.a.category" not in str(caught.value)


def test_signature_checks():
    body, now = b'{"a":1}', str(int(time.time()))
    good = sign(b"s", now, body)
    assert verify_signature(b"s", now, body, good)
    assert not verify_signature(b"s", now, body + b" ", good)
    assert not verify_signature(b"s", now, body, None)
    assert not verify_signature(b"s", "yesterday", body, good)
    old = str(int(time.time()) - 301)
    assert not verify_signature(b"s", old, body, sign(b"s", old, body))
    assert verify_signature(b"s", old, body, sign(b"s", old, body), max_age=600)


def test_a_gather_for_a_right_to_know_period_carries_it(monkeypatch):
    """The service is told the period asked for (it answers with what it collected
    then); a request that asked for none sends no period, nor does any other action."""
    import datetime

    from requests_app.models import VerificationEvidence

    monkeypatch.setenv(SECRET_ENV, SECRET)
    accepting = Receiver(status=202)
    try:
        source = make_source(accepting.url + PATH)
        run = make_run(source)
        run.request.evidence = VerificationEvidence(period_start=datetime.date(2025, 1, 1),
                                                    period_end=datetime.date(2025, 12, 31))
        assert HttpConnector(source).gather(run, identity(), ListSink()).waiting
        sent = json.loads(accepting.received.get(timeout=5)[2])
        assert sent["period"] == {"start": "2025-01-01", "end": "2025-12-31"}
        assert HttpConnector(source).plan_erasure(make_run(source, "plan_erasure"),
                                                  identity()).waiting
        assert "period" not in json.loads(accepting.received.get(timeout=5)[2])
    finally:
        accepting.close()


def test_the_service_is_sent_the_offices_own_identity_types(monkeypatch):
    """A request that gives a loyalty card number (and no email): the service is
    sent it by the name the office's maps use, beside the usual fields, for every
    action, signed like the rest of the body."""
    monkeypatch.setenv(SECRET_ENV, SECRET)
    accepting = Receiver(status=202)
    try:
        source = make_source(accepting.url + PATH)
        who = IdentityData(email="", name="Lee Letter", extra=(("loyalty_id", "LC-7731"),
                                                               ("name", "not the name")))
        for action in ("gather", "plan_erasure", "erase"):
            run = make_run(source, action)
            connector = HttpConnector(source)
            outcome = (connector.gather(run, who, ListSink()) if action == "gather" else
                       connector.plan_erasure(run, who) if action == "plan_erasure" else
                       connector.erase(run, who, {}))
            assert outcome.waiting
            _path, headers, body = accepting.received.get(timeout=5)
            assert verify_signature(SECRET, headers[TIMESTAMP_HEADER], body,
                                    headers[SIGNATURE_HEADER])
            assert json.loads(body)["identity"] == {
                "email": "", "name": "Lee Letter", "phone": "", "account_number": "",
                "postal_address": "", "loyalty_id": "LC-7731"}
    finally:
        accepting.close()
