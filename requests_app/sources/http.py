"""HTTP sources: the portal asks a company's own service to act for a request.

The protocol, which the company implements on its side
------------------------------------------------------
The portal POSTs one JSON object to the source's URL (redirects are not followed):

    {"action": "gather" | "plan_erasure" | "erase" | "remaining" | "correct" | "opt_out",
     "request_reference": "PP-7K2D-9QXM-4TRB-H1VC",
     "run": "<unguessable run token>",
     "identity": {"email": ..., "name": ..., "phone": ..., "account_number": ...,
                  "postal_address": ...,             # empty strings where not given
                  "loyalty_id": ...},                # and each identity type of the
                                                     # office's own the request gives,
                                                     # by the name its maps use
     "change": {...},                                # only for correct and opt_out
     "period": {"start": "2025-01-01", "end": "2025-12-31"},  # only for a gather whose
                                                     # Right to Know request asked for one
     "callback_url": "https://portal.example/api/sources/callback/<run token>/"}

Every message, both ways, is signed with a secret shared with the company (the
portal reads it from the environment variable named on the source):

    X-PrivacyPortal-Timestamp: <unix seconds>
    X-PrivacyPortal-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>

A receiver recomputes the HMAC over the raw body bytes, compares in constant time
and rejects timestamps more than 5 minutes off (see `verify_signature`).

The service answers either 200 with the reply below, or 202 with any body and later
POSTs the reply, signed the same way, to callback_url. Replies by action:

    gather        {"collections": {"<name>": {"categories": {"<field>": "<fideslang category>"},
                                              "records": [{"<field>": <value>, ...}, ...]}},
                   "period_applied": true}           # when sent a period and the records
                                                     # are those collected in it (else the
                                                     # package says the source could not
                                                     # filter by date)
    plan_erasure  {"delete": <int>, "retain": <int>, "legal_basis": "<why records are kept>"}
    erase         {"deleted": <int>}                 # must be idempotent
    remaining     {"remaining": <int>}               # always answered synchronously
    correct       {"applied": true}
    opt_out       {"applied": true}

Every field of a gathered record must have a category. Timeouts, connection errors,
429 and 5xx are retried with backoff; other 4xx, redirects and malformed replies fail
the run. Error messages never carry identity values or reply bodies.

A service that fails SOURCE_BREAKER_FAILURES calls in a row (timeouts, connection
errors, 429, 5xx) is marked unhealthy and called no more; the portal then sends an
unsigned `HEAD` to the source's URL now and then, and any answer below 500 (but 429)
within the source's timeout (a 405 will do) marks it healthy again.
"""

import hashlib
import hmac
import json
import os
import time

import requests
from django.conf import settings

from requests_app.sources.base import (
    Connector,
    IdentityData,
    Outcome,
    SourceError,
    TransientSourceError,
    collection_period,
)
from requests_app.sources.categories import is_category

TIMESTAMP_HEADER = "X-PrivacyPortal-Timestamp"
SIGNATURE_HEADER = "X-PrivacyPortal-Signature"


def _bytes(secret) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header value for `body` sent at `timestamp`."""
    mac = hmac.new(_bytes(secret), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(secret, timestamp, body: bytes, signature_header, *, max_age=300) -> bool:
    """True if `signature_header` signs `body` with `secret` and `timestamp` is
    within `max_age` seconds of now."""
    if not secret or not timestamp or not signature_header:
        return False
    try:
        age = abs(time.time() - int(timestamp))
    except (TypeError, ValueError):
        return False
    if age > max_age:
        return False
    expected = sign(secret, str(timestamp), body).encode()
    return hmac.compare_digest(expected, str(signature_header).encode("utf-8", "replace"))


def secret_for(source) -> bytes:
    """The source's shared secret, from the environment variable it names."""
    if not source.secret_env:
        raise SourceError(f"{source.name}: no HMAC secret environment variable is configured")
    secret = os.environ.get(source.secret_env, "")
    if not secret:
        raise SourceError(f"{source.name}: environment variable {source.secret_env} is not set")
    return secret.encode()


def _count(source, body: dict, key: str) -> int:
    value = body.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise SourceError(f"{source.name}: malformed reply ('{key}' must be a count)")
    return value


def _gather(source, body: dict, sink) -> Outcome:
    collections = body.get("collections")
    if not isinstance(collections, dict):
        raise SourceError(f"{source.name}: malformed gather reply (no 'collections' object)")
    counts = {}
    # Check everything before writing anything, so a bad reply leaves no half-written data.
    for name, collection in collections.items():
        categories = collection.get("categories") if isinstance(collection, dict) else None
        records = collection.get("records") if isinstance(collection, dict) else None
        if not isinstance(categories, dict) or not isinstance(records, list):
            raise SourceError(f"{source.name}: malformed gather reply (collection shape)")
        if not all(isinstance(c, str) and is_category(c) for c in categories.values()):
            raise SourceError(f"{source.name}: gather reply uses an unknown data category")
        for record in records:
            if not isinstance(record, dict):
                raise SourceError(f"{source.name}: malformed gather reply (record not an object)")
            if not set(record) <= set(categories):
                raise SourceError(f"{source.name}: gather reply has a field without a category")
        counts[name] = len(records)
    for name, collection in collections.items():
        for record in collection["records"]:
            sink.write(name, record, collection["categories"])
    return Outcome(records=sum(counts.values()), result={"collections": counts})


def _with_period(run, outcome: Outcome, body: dict) -> Outcome:
    """A gather for a Right to Know period records whether the service says it kept
    to it ("period_applied": true); a service that does not say so is listed in the
    package as one that could not filter by date."""
    if collection_period(run):
        outcome.result["period_applied"] = body.get("period_applied") is True
    return outcome


def apply_reply(run, identity: IdentityData, body: dict, sink) -> Outcome:
    """Turn a reply (a 200 body or a callback body) to `run` into an Outcome,
    writing gathered records to `sink`."""
    source = run.source
    if not isinstance(body, dict):
        raise SourceError(f"{source.name}: malformed reply (not a JSON object)")
    if run.action == "gather":
        return _with_period(run, _gather(source, body, sink), body)
    if run.action == "plan_erasure":
        plan = {"delete": _count(source, body, "delete"), "retain": _count(source, body, "retain")}
        if not isinstance(body.get("legal_basis"), str):
            raise SourceError(f"{source.name}: malformed reply ('legal_basis' must be text)")
        return Outcome(result={**plan, "legal_basis": body["legal_basis"]})
    if run.action == "erase":
        deleted = _count(source, body, "deleted")
        return Outcome(records=deleted, result={"deleted": deleted})
    if run.action in ("correct", "opt_out"):
        if body.get("applied") is not True:
            raise SourceError(f"{source.name}: the change was not applied")
        return Outcome(result={"applied": True})
    raise SourceError(f"{source.name}: no reply expected for action {run.action}")


class HttpConnector(Connector):
    kind, access, erasure, changes, replies_later = "http", True, True, True, True

    def _post(self, run, action: str, identity: IdentityData, change=None):
        """Send one signed request; the parsed 200 body, or None for 202 (a callback follows)."""
        source = self.source
        payload = {
            "action": action,
            "request_reference": run.request.reference,
            "run": run.token,
            "identity": identity.for_service(),
            "callback_url": f"{settings.SITE_URL}/api/sources/callback/{run.token}/",
        }
        if change is not None:
            payload["change"] = change
        if action == "gather" and (period := collection_period(run)):
            # A Right to Know answer covers the period asked for: the service gives
            # the records it collected in it (first and last day, inclusive).
            payload["period"] = {"start": period[0].isoformat(),
                                 "end": period[1].isoformat()}
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(secret_for(source), timestamp, body),
        }
        name = f"{source.name} ({action})"
        # `from None` everywhere: no chained exception (or its traceback) to leak values.
        try:
            response = requests.post(
                source.url, data=body, headers=headers, timeout=source.timeout_seconds,
                verify=source.verify_tls, allow_redirects=False,
            )
        except requests.Timeout:
            raise TransientSourceError(
                f"{name}: no answer within {source.timeout_seconds} s") from None
        except requests.ConnectionError:
            raise TransientSourceError(f"{name}: connection failed") from None
        except requests.RequestException as exc:
            raise SourceError(f"{name}: request failed ({type(exc).__name__})") from None
        with response:
            status = response.status_code
            if status == 202:
                return None
            if status == 429 or status >= 500:
                raise TransientSourceError(f"{name}: HTTP {status}, will retry")
            if 300 <= status < 400:
                raise SourceError(f"{name}: HTTP {status} redirect (redirects are not followed)")
            if status != 200:
                raise SourceError(f"{name}: HTTP {status}")
            try:
                parsed = response.json()
            except ValueError:
                raise SourceError(f"{name}: HTTP 200 with a body that is not JSON") from None
        if not isinstance(parsed, dict):
            raise SourceError(f"{name}: HTTP 200 with a body that is not a JSON object")
        return parsed

    def _act(self, run, action, identity, sink=None, change=None) -> Outcome:
        body = self._post(run, action, identity, change)
        return Outcome(waiting=True) if body is None else apply_reply(run, identity, body, sink)

    def gather(self, run, identity: IdentityData, sink) -> Outcome:
        return self._act(run, "gather", identity, sink)

    def plan_erasure(self, run, identity: IdentityData) -> Outcome:
        return self._act(run, "plan_erasure", identity)

    def erase(self, run, identity: IdentityData, plan: dict, on_batch=None) -> Outcome:
        return self._act(run, "erase", identity)

    def remaining(self, run, identity: IdentityData) -> int:
        body = self._post(run, "remaining", identity)
        if body is None:
            raise SourceError(f"{self.source.name}: 'remaining' must be answered synchronously")
        return _count(self.source, body, "remaining")

    def probe(self) -> bool:
        """A HEAD of the source's URL (unsigned: it carries nothing), within the
        source's timeout: any answer below 500 but 429 says the service is there
        (a 405 from an endpoint that takes only POST is an answer)."""
        try:
            response = requests.head(self.source.url, timeout=self.source.timeout_seconds,
                                     verify=self.source.verify_tls, allow_redirects=False)
        except requests.RequestException:
            return False
        with response:
            return response.status_code < 500 and response.status_code != 429

    def apply_change(self, run, identity: IdentityData, change: dict) -> Outcome:
        if run.action not in ("correct", "opt_out"):
            raise SourceError(f"{self.source.name}: {run.action} is not a change")
        return self._act(run, run.action, identity, change=change)
