"""The staff area's pages for manual-source owners (their tasks) and the package
preview. The queue, desk, intake and emails are in the modules beside this one."""

from django import forms
from django.core.exceptions import PermissionDenied
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext_lazy as _

from requests_app.files import iter_decrypted
from requests_app.models import Actor, DataSource, Package, PrivacyRequest, SourceRun
from requests_app.services.fulfilment import manual
from requests_app.services.audit.events import record_event
from requests_app.sources.base import SourceError, collection_period
from requests_app.sources.datamap import identity_label
from requests_app.sources.manual import MAX_UPLOAD, parse_upload
from requests_app.sources.registry import kinds_that
from requests_app.staff.access import staff_required

_staff_required = staff_required()


def _may_work(user, run: SourceRun) -> bool:
    return run.source.owner_id == user.pk or user.has_perm("requests_app.manage_sources")


@_staff_required
def task_list(request):
    runs = (SourceRun.objects.filter(source__kind__in=kinds_that("needs_owner"),
                                     state=SourceRun.State.WAITING)
            .select_related("source", "request").order_by("request__due_on"))
    if not request.user.has_perm("requests_app.manage_sources"):
        runs = runs.filter(source__owner=request.user)
    return render(request, "staff/task_list.html", {"runs": runs})


class TaskForm(forms.Form):
    OUTCOMES = [("done", _("Done")), ("impossible", _("Impossible"))]
    records = forms.FileField(label=_("Records found (CSV or JSON)"), required=False)
    outcome = forms.ChoiceField(label=_("Outcome"), choices=OUTCOMES, required=False)
    reason = forms.CharField(label=_("Why it is impossible"), required=False,
                             widget=forms.Textarea(attrs={"rows": 3}), max_length=2000)
    # Only for a Right to Know period (the page says which): unticked, the package
    # lists the source as one that could not filter by date.
    period_applied = forms.BooleanField(
        label=_("I gave only the records collected in this period (and those that carry "
                "no date)"), required=False)

    def __init__(self, *args, action, **kwargs):
        super().__init__(*args, **kwargs)
        self.action = action

    def clean(self):
        data = super().clean()
        if self.action == SourceRun.Action.GATHER:
            upload = data.get("records")
            if upload is None:
                raise forms.ValidationError(_("Upload the records you found (an empty CSV "
                                              "with its header row if you found none)."))
            if upload.size > MAX_UPLOAD:
                raise forms.ValidationError(_("The file is larger than 20 MB."))
            try:
                data["parsed"] = parse_upload(upload.name, upload.read())
            except SourceError as exc:
                raise forms.ValidationError(str(exc)) from None
        else:
            if not data.get("outcome"):
                raise forms.ValidationError(_("Say whether it is done or impossible."))
            if data["outcome"] == "impossible" and not data.get("reason", "").strip():
                raise forms.ValidationError(_("Say why it is impossible."))
        return data


@_staff_required
def task_detail(request, token):
    run = get_object_or_404(SourceRun.objects.select_related("source", "request__identity"),
                            token=token, source__kind__in=kinds_that("needs_owner"))
    if not _may_work(request.user, run):
        raise PermissionDenied
    form = TaskForm(request.POST or None, request.FILES or None, action=run.action)
    if request.method == "POST" and run.state == SourceRun.State.WAITING and form.is_valid():
        actor = Actor.staff(request.user)
        if run.action == SourceRun.Action.GATHER:
            period = collection_period(run)
            manual.complete_manual_run(
                run, actor=actor, records=form.cleaned_data["parsed"],
                period_applied=form.cleaned_data["period_applied"] if period else None)
        else:
            manual.complete_manual_run(run, actor=actor, outcome=form.cleaned_data["outcome"],
                                           reason=form.cleaned_data["reason"])
        return redirect("staff:tasks")
    record_event("staff.viewed_identity", actor=Actor.staff(request.user), request=run.request,
                 data={"page": "manual task", "source": run.source.name})
    period = collection_period(run) if run.action == SourceRun.Action.GATHER else None
    return render(request, "staff/task_detail.html", {
        "run": run, "form": form, "period": period,
        "identifiers": identifiers(run.request.identity)})


def identifiers(identity) -> list[tuple[str, str]]:
    """Every identifier the request gives, labelled as the forms label it, the
    office's own types (a loyalty card number) included: the owner searches by each."""
    labels = DataSource.identity_types()
    given = [(_("Name"), identity.name), (_("Email"), identity.email),
             (_("Phone"), identity.phone), (_("Customer number"), identity.account_number),
             (_("Postal address"), identity.postal_address)]
    given += [(labels.get(k) or identity_label(k), v)
              for k, v in sorted((identity.extra or {}).items())]
    return [(label, value) for label, value in given if value]


@_staff_required
def package_preview(request, reference, kind):
    """Staff look at a package before releasing it (streamed, decrypted, audited)."""
    if not request.user.has_perm("requests_app.work_request"):
        raise PermissionDenied
    privacy_request = get_object_or_404(PrivacyRequest, reference=reference)
    package = Package.objects.filter(request=privacy_request, kind=kind, purged_at=None
                                     ).exclude(sha256="").first()  # built, not being built
    if package is None:
        raise Http404
    from django.conf import settings

    record_event("package.previewed", actor=Actor.staff(request.user), request=privacy_request,
                 data={"kind": kind})
    response = StreamingHttpResponse(
        iter_decrypted(f"{settings.MEDIA_ROOT}/{package.path}"), content_type=package.content_type)
    response["Content-Disposition"] = f'attachment; filename="{package.filename}"'
    return response
