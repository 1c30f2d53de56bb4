"""The endpoint where HTTP sources deliver asynchronous replies (after answering 202)."""

import json
import logging

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from requests_app.models import SourceRun
from requests_app.services.fulfilment.attempts import NotOurs, attempt
from requests_app.sources.base import IdentityData, SourceError
from requests_app.sources.http import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    apply_reply,
    secret_for,
    verify_signature,
)
from requests_app.sources.registry import kinds_that

log = logging.getLogger(__name__)
MAX_BODY = 50 * 1024 * 1024


@csrf_exempt  # authenticated by the HMAC signature instead
@require_POST
def source_callback(request, token):
    run = SourceRun.objects.select_related("source", "request__identity").filter(
        token=token, source__kind__in=kinds_that("replies_later")).first()
    if int(request.headers.get("Content-Length") or 0) > MAX_BODY:
        return JsonResponse({"error": "body too large"}, status=413)
    # Read the stream ourselves: request.body would stop at Django's 2.5 MB limit
    # for form data, and a gather reply can be larger.
    body = request.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        return JsonResponse({"error": "body too large"}, status=413)
    try:
        secret = secret_for(run.source) if run else None
    except SourceError:
        secret = None
    signed = secret is not None and verify_signature(
        secret, request.headers.get(TIMESTAMP_HEADER), body,
        request.headers.get(SIGNATURE_HEADER))
    if run is None or not signed:
        # One answer for an unknown token and a bad signature: nothing to probe.
        return JsonResponse({"error": "unknown run or bad signature"}, status=403)
    try:
        reply = json.loads(body)
    except ValueError:
        return JsonResponse({"error": "malformed reply"}, status=400)
    try:
        with attempt(run.pk, waiting=True) as work:
            _record(run, work, reply)
    except NotOurs:
        if run.state == SourceRun.State.DONE:
            return JsonResponse({"status": "already recorded"}, status=200)
        return JsonResponse({"error": "not waiting for a reply"}, status=409)
    if isinstance(work.error, SourceError):
        log.info("run %s: callback refused (%s)", run.pk, type(work.error).__name__)
        return JsonResponse({"error": "malformed reply"}, status=400)
    if work.error is not None:
        return JsonResponse({"error": "internal error"}, status=500)
    return JsonResponse({"status": "recorded"})


def _record(run: SourceRun, work, reply) -> None:
    """The reply to the run's request, as the connector reads it, recorded."""
    identity = IdentityData.of(run.request.identity)
    if run.action == SourceRun.Action.GATHER:
        with work.sink() as sink:
            outcome = apply_reply(run, identity, reply, sink)
        result = {**outcome.result, "collections": sink.collections}
    else:
        outcome = apply_reply(run, identity, reply, None)
        result = outcome.result
    work.finish(outcome.records, result)
