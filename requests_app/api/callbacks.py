"""The endpoint where HTTP sources deliver asynchronous replies (after answering 202)."""

import json
import logging

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from requests_app.models import SourceRun
from requests_app.services.fulfilment import runs as fulfilment
from requests_app.sources.base import IdentityData, SourceError
from requests_app.sources.http import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    apply_reply,
    secret_for,
    verify_signature,
)
from requests_app.sources.records import RecordSink

log = logging.getLogger(__name__)
MAX_BODY = 50 * 1024 * 1024


@csrf_exempt  # authenticated by the HMAC signature instead
@require_POST
def source_callback(request, token):
    run = SourceRun.objects.select_related("source", "request__identity").filter(
        token=token, source__kind="http").first()
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
    attempt = fulfilment.claim(run.pk, waiting=True)
    if attempt is None:
        if run.state == SourceRun.State.DONE:
            return JsonResponse({"status": "already recorded"}, status=200)
        return JsonResponse({"error": "not waiting for a reply"}, status=409)
    try:
        identity = IdentityData.of(run.request.identity)
        if run.action == SourceRun.Action.GATHER:
            with RecordSink(run, attempt) as sink:
                outcome = apply_reply(run, identity, reply, sink)
            result = {**outcome.result, "collections": sink.collections}
        else:
            outcome = apply_reply(run, identity, reply, None)
            result = outcome.result
    except SourceError as exc:
        log.info("run %s: callback refused (%s)", run.pk, type(exc).__name__)
        fulfilment.note_error(run.pk, str(exc), final=True, attempt=attempt)
        return JsonResponse({"error": "malformed reply"}, status=400)
    fulfilment.finish_run(run.pk, outcome.records, result, attempt=attempt)
    return JsonResponse({"status": "recorded"})
