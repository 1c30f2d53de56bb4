"""The auditor area: request log, event log, metrics report. Read-only, no personal
data beyond what the log holds; every export is itself audited."""

import datetime
import json

from django import forms
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from requests_app import zipfiles
from requests_app.audit import opt_outs, reports
from requests_app.models import Actor, AuditEvent
from requests_app.rules import jurisdiction_choices, request_type_choices
from requests_app.services.audit import checkpoints
from requests_app.services.audit.events import record_event
from requests_app.staff.access import staff_required

AUDITOR_PERMISSION = "requests_app.view_auditevent"


# A verified (TOTP) staff login holding the auditor's permission.
auditor_required = staff_required(AUDITOR_PERMISSION)


class ExportForm(forms.Form):
    start = forms.DateField(label=_("Received from"), required=False,
                            widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label=_("Received until"), required=False,
                          widget=forms.DateInput(attrs={"type": "date"}))
    type = forms.ChoiceField(label=_("Type"), required=False,
                             choices=lambda: [("", _("All"))] + request_type_choices())
    outcome = forms.ChoiceField(label=_("Outcome"), required=False,
                                choices=[("", _("All"))] + [(o, o) for o in reports.OUTCOMES])
    format = forms.ChoiceField(label=_("Format"), choices=[("csv", "CSV"),
                                                           ("jsonl", "JSON Lines")],
                               initial="csv")

    def clean(self):
        data = super().clean()
        if data.get("start") and data.get("end") and data["start"] > data["end"]:
            raise forms.ValidationError(_("The start date is after the end date."))
        return data


def newest_checkpoint() -> dict:
    """The newest signed checkpoint of the chain's head (kept outside the database),
    as its signed line, with the public key that checks it."""
    try:
        newest = checkpoints.latest()
    except checkpoints.BadCheckpoint as exc:
        return {"error": f"checkpoint {exc}"}
    if newest is None:
        return {}
    return {**json.loads(newest.line()), "public_key": checkpoints.public_key()}


@auditor_required
def home(request):
    head = AuditEvent.objects.filter(action="audit.chain_head").order_by("-id").first()
    year = timezone.localdate().year
    return render(request, "audit/home.html", {
        "form": ExportForm(), "head": head, "checkpoint": newest_checkpoint(),
        "years": range(year, year - 4, -1)})


def _export(request, kind: str, body, filters: dict, fmt: str):
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    name = f"{kind}-{stamp}.{fmt}"
    manifest = {"file": name, "kind": kind, "filters": filters,
                "generated_at": timezone.now().isoformat(), "generated_by": request.user.username,
                # Compare the log with it: the chain up to `seq` must end in `head`.
                "chain_checkpoint": newest_checkpoint()}
    now = datetime.datetime.now(datetime.timezone.utc)

    def members():
        yield name, reports.hashed(body, manifest)
        yield "manifest.json", [json.dumps(manifest, indent=2).encode()]

    record_event("audit.exported", actor=Actor.staff(request.user),
                 data={"kind": kind, "format": fmt, "filters": filters})
    # The packages' ZIP64 writer, with their fast deflate: an export of millions of
    # rows is bound by compression otherwise.
    response = StreamingHttpResponse(zipfiles.stream_zip(members(), now),
                                     content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{kind}-{stamp}.zip"'
    return response


def _request_log(d):
    rows = reports.request_log(d.get("start"), d.get("end"), d.get("type") or None,
                               d.get("outcome") or None)
    if d["format"] == "csv":
        return reports.as_csv(rows, reports.REQUEST_LOG_COLUMNS)
    return reports.as_jsonl(rows)


def _event_log(d):
    return reports.event_log_text(d["format"], d.get("start"), d.get("end"))


# Each export: how its body is made, and which filters apply to it (only those are
# recorded in the manifest and the audit event).
EXPORTS = {
    "request-log": (_request_log, ("start", "end", "type", "outcome")),
    "event-log": (_event_log, ("start", "end")),
}


def _export_view(request, kind: str):
    form = ExportForm(request.GET or None)
    if not form.is_valid():
        return render(request, "audit/home.html", {"form": form}, status=400)
    build, applicable = EXPORTS[kind]
    d = form.cleaned_data
    filters = {k: (d[k].isoformat() if isinstance(d[k], datetime.date) else d[k])
               for k in applicable if d.get(k)}
    return _export(request, kind, build(d), filters, d["format"])


@auditor_required
def export_requests(request):
    return _export_view(request, "request-log")


@auditor_required
def export_events(request):
    return _export_view(request, "event-log")


def _no_such_year(request, year: int):
    if 2000 <= year <= 2100:
        return None
    return render(request, "audit/home.html", {"form": ExportForm(),
                                               "error": _("No such year.")}, status=404)


def _yearly_csv(request, kind: str, year: int, rows, columns, suffix: str = "") -> HttpResponse:
    """A yearly report as CSV; the download is audited (with the filter, if any)."""
    record_event("audit.exported", actor=Actor.staff(request.user),
                 data={"kind": kind, "year": year, "format": "csv",
                       **({"filter": suffix.lstrip("-")} if suffix else {})})
    response = HttpResponse("".join(reports.as_csv(rows, columns)),
                            content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{kind}-{year}{suffix}.csv"'
    return response


class MetricsFilter(forms.Form):
    jurisdiction = forms.ChoiceField(label=_("Jurisdiction"), required=False,
                                     choices=lambda: [("", _("All"))] + jurisdiction_choices())


@auditor_required
def metrics(request, year: int):
    if refused := _no_such_year(request, year):
        return refused
    chosen = MetricsFilter(request.GET)
    if not chosen.is_valid():
        return render(request, "audit/home.html", {
            "form": ExportForm(), "error": _("No such jurisdiction.")}, status=400)
    jurisdiction = chosen.cleaned_data["jurisdiction"]
    report = reports.metrics(year, jurisdiction)
    if request.GET.get("format") == "csv":
        suffix = f"-{jurisdiction}" if jurisdiction else ""
        return _yearly_csv(request, "metrics", year, reports.metrics_csv_rows(report),
                           reports.METRICS_COLUMNS, suffix=suffix)
    groups = reports.grouped(report)
    for g in groups:
        g["on_time_percent"] = round(100 * g["on_time_rate"]) if g["on_time_rate"] else 0
    return render(request, "audit/metrics.html", {
        "report": report, "groups": groups, "months": reports.monthly_bars(report),
        "filter": chosen, "query": request.GET.urlencode()})


@auditor_required
def opt_out_report(request, year: int):
    if refused := _no_such_year(request, year):
        return refused
    rows = opt_outs.report(year)
    if request.GET.get("format") == "csv":
        return _yearly_csv(request, "opt-outs", year, rows, opt_outs.COLUMNS)
    return render(request, "audit/opt_outs.html", {"rows": rows, "year": year})
