"""The request desk: everything about one request, and the steps this user may
take in its state, read from the machine (services.requests.lifecycle.available_transitions),
each with the inputs it needs. Every opening of a desk is audited: it shows the
person's data."""

import mimetypes

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy
from django.views.decorators.http import require_POST

from requests_app.files import iter_decrypted
from requests_app.preferences.third_party import AnswerForm
from requests_app.staff.consent_views import consent_history_panel
from requests_app.models import (
    Actor,
    AuditEvent,
    GuardianDetails,
    IntakeRecord,
    ManualVerification,
    VerificationEvidence,
    OutgoingEmail,
    Package,
    PrivacyRequest,
    RequestNote,
    SourceRun,
    ThirdPartyNotice,
)
from requests_app.models.privacy_request import State, TransitionInputError
from requests_app.models.repeats import repeats_panel
from requests_app.models.steps import Input
from requests_app.models.verification import what_is_needed
from requests_app.services.audit.events import record_event
from requests_app.services.requests.lifecycle import (
    TransitionRefused,
    available_transitions,
    do_transition,
    may_take,
)
from requests_app.services.fulfilment.runs import do_retry_fulfilment, do_retry_source
from requests_app.services.requests.desk import assignable_users, do_add_note
from requests_app.services.requests.period import do_widen_period, widenable
from requests_app.sources.base import requested_period
from requests_app.services.notices.staff import do_confirm_notice
from requests_app.services.verification.manual import STEPS as MANUAL_STEPS
from requests_app.services.verification.manual import do_verify_manually
from requests_app.staff.access import staff_required
from requests_app.staff.erasure_plan import erasure_plan
from requests_app.staff.letters import by_post_panel

VIEW = "requests_app.view_privacyrequest"
# "Retry this source" is a Privacy Manager's: the step it may take (retry_fulfilment,
# work_request) and, as it may re-run an erasure, approve_deletion.
RETRY_SOURCE = ("requests_app.work_request", "requests_app.approve_deletion")
# Steps whose use case does more than the transition: the desk takes them through it
# (the same arguments as do_transition, without the step's name).
USE_CASES = {"retry_fulfilment": do_retry_fulfilment,
             **{step: (lambda pk, step=step, **kw: do_verify_manually(pk, step, **kw))
                for step in MANUAL_STEPS}}
# States in which fulfilment work runs: the progress panel refreshes itself.
WORKING = {State.APPROVED, State.FULFILLING, State.WAITING_MANUAL}
POLL_SECONDS = 5


class StepForm(forms.Form):
    """The fields every step's form carries: what the user saw, so that a form
    posted after someone else changed the request is refused. A step's own inputs
    are added from its description on the machine (models/steps.py)."""

    expected_state = forms.CharField(widget=forms.HiddenInput)
    version = forms.CharField(widget=forms.HiddenInput)

    def inputs(self) -> dict:
        return {k: v for k, v in self.cleaned_data.items()
                if k not in ("expected_state", "version")}


def _field(spec: Input) -> forms.Field:
    if spec.file:
        return forms.FileField(label=spec.label, required=spec.required,
                               help_text=spec.help_text)
    if spec.multiple:
        return forms.MultipleChoiceField(label=spec.label, choices=spec.choices,
                                         widget=forms.CheckboxSelectMultiple,
                                         required=spec.required, help_text=spec.help_text)
    if spec.choices:
        return forms.ChoiceField(label=spec.label, choices=[("", "---------"), *spec.choices],
                                 help_text=spec.help_text)
    return forms.CharField(label=spec.label, widget=forms.Textarea(attrs={"rows": spec.rows}),
                           max_length=4000, help_text=spec.help_text)


def _step_form(name: str, request: PrivacyRequest, data=None, files=None) -> StepForm:
    meta = PrivacyRequest.step_meta(name) or {}
    form = StepForm(data, files, prefix=name, initial={"expected_state": request.state,
                                                       "version": request.version})
    for spec in meta.get("inputs", ()):
        form.fields[spec.name] = _field(spec)
    return form


def _label(name: str) -> str:
    meta = PrivacyRequest.step_meta(name) or {}
    return meta.get("label") or name


def _steps(request: PrivacyRequest, user, bound=None) -> list[dict]:
    steps = []
    for name in available_transitions(request, Actor.staff(user)):
        meta = PrivacyRequest.step_meta(name)
        form = bound if bound is not None and bound.prefix == name else _step_form(name, request)
        steps.append({"name": name, "label": meta["label"] or name, "form": form,
                      "danger": meta["danger"], "confirm": meta["confirm"],
                      "hint": f"staff/steps/{meta['hint']}.html" if meta["hint"] else ""})
    return steps


def _get(reference: str) -> PrivacyRequest:
    return get_object_or_404(
        PrivacyRequest.objects.select_related("identity", "assignee", "duplicate_of"),
        reference=reference)


def _timeline(request: PrivacyRequest) -> list[dict]:
    """Audit events, emails and notes, in the order they happened."""
    items = [{"at": e.at, "kind": "event", "event": e}
             for e in AuditEvent.objects.filter(request=request).order_by("id")]
    items += [{"at": m.created_at, "kind": "email", "email": m}
              for m in OutgoingEmail.objects.filter(request=request)]
    items += [{"at": n.created_at, "kind": "note", "note": n}
              for n in RequestNote.objects.filter(request=request).select_related("author")]
    return sorted(items, key=lambda item: item["at"])


def _runs(request: PrivacyRequest):
    return list(SourceRun.objects.filter(request=request).select_related("source")
                .order_by("action", "source__name"))


def progress_context(privacy_request: PrivacyRequest, user) -> dict:
    """What the per-source progress panel shows (the desk, and its polling)."""
    runs = _runs(privacy_request)
    return {"runs": runs, "poll": privacy_request.state in WORKING,
            "poll_seconds": POLL_SECONDS, "may_retry_source": user.has_perms(RETRY_SOURCE),
            "erasure_plan": erasure_plan(runs)}


def period_panel(privacy_request: PrivacyRequest, user, bound=None) -> dict:
    """The period a Right to Know request covers, and the form that widens it."""
    if not privacy_request.type_rules.covers_period:
        return {"period_panel": False}
    may = user.has_perm("requests_app.work_request") and widenable(privacy_request)
    return {"period_panel": True, "period": requested_period(privacy_request),
            "period_form": (bound or PeriodForm()) if may else None}


def desk_context(privacy_request: PrivacyRequest, user, bound=None,
                 bound_period=None) -> dict:
    return {
        **progress_context(privacy_request, user),
        "privacy_request": privacy_request,
        "identity": getattr(privacy_request, "identity", None),
        "intake": IntakeRecord.objects.filter(request=privacy_request).first(),
        "evidence": VerificationEvidence.objects.filter(request=privacy_request).first(),
        "manual": ManualVerification.objects.filter(request=privacy_request)
        .select_related("verified_by").first(),
        "guardian": GuardianDetails.objects.filter(request=privacy_request).first(),
        "verification_needed": (what_is_needed(privacy_request)
                                if privacy_request.state == State.PENDING_VERIFICATION else []),
        "steps": _steps(privacy_request, user, bound),
        "timeline": _timeline(privacy_request),
        "packages": list(Package.objects.filter(request=privacy_request, purged_at=None)
                         .exclude(sha256="")),  # not one still being built
        "duplicates": list(privacy_request.duplicates.all()),
        "may_note": user.has_perm("requests_app.work_request"),
        "may_assign": user.has_perm("requests_app.assign_request"),
        "staff": assignable_users() if user.has_perm("requests_app.assign_request") else [],
        "note_form": NoteForm(),
        "notices": _notices(privacy_request),
        "attention_reason": _attention_reason(privacy_request),
        "repeats": repeats_panel(privacy_request),
        **by_post_panel(privacy_request),
        **period_panel(privacy_request, user, bound_period),
        **consent_history_panel(user, privacy_request),
    }


def _attention_reason(privacy_request: PrivacyRequest) -> str:
    """Why a request needs attention (the words of the step that flagged it: the
    failed sources and their errors), shown at the top of its desk."""
    if privacy_request.state != State.NEEDS_ATTENTION:
        return ""
    return (AuditEvent.objects.filter(request=privacy_request, to_state=State.NEEDS_ATTENTION)
            .order_by("-id").values_list("reason", flat=True).first() or "")


def _notices(privacy_request: PrivacyRequest) -> list:
    """The third parties told of a deletion or opt-out (staff may record an answer
    still awaited, given by email, letter or phone)."""
    return list(privacy_request.third_party_notices.select_related("third_party")
                .order_by("third_party__name"))


class PeriodForm(forms.Form):
    start = forms.DateField(label=_lazy("First day (empty: everything held, whatever its "
                                        "date)"), required=False,
                            widget=forms.DateInput(attrs={"type": "date"}),
                            error_messages={"invalid": _lazy("Enter the first day as "
                                                             "YYYY-MM-DD.")})
    end = forms.DateField(label=_lazy("Last day (empty: as now)"), required=False,
                          widget=forms.DateInput(attrs={"type": "date"}),
                          error_messages={"invalid": _lazy("Enter the last day as "
                                                           "YYYY-MM-DD.")})
    reason = forms.CharField(label=_lazy("Why (kept in the audit trail)"), max_length=500,
                             widget=forms.Textarea(attrs={"rows": 2}),
                             error_messages={"required": _lazy("Say why the period is "
                                                               "widened.")})


@require_POST
@staff_required(VIEW, "requests_app.work_request")
def widen_period(request, reference):
    """Widen the period a Right to Know request covers (recorded with the reason)."""
    privacy_request = _get(reference)
    form = PeriodForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            do_widen_period(privacy_request.pk, start=data["start"], end=data["end"],
                            reason=data["reason"], by=request.user)
        except TransitionInputError as exc:
            form.add_error(None, exc)
        except TransitionRefused as exc:
            messages.error(request, str(exc))
            return redirect("staff:desk", reference=reference)
        else:
            messages.success(request, _("The period is widened."))
            return redirect("staff:desk", reference=reference)
    messages.error(request, _("Check the form of “Widen the period”."))
    _viewed(request, privacy_request, "request desk")
    return render(request, "staff/desk.html", desk_context(
        privacy_request, request.user, bound_period=form), status=400)


class NoteForm(forms.Form):
    text = _field(Input("text", _lazy("Internal note (never shown to the consumer)"), rows=3))


def _viewed(request, privacy_request: PrivacyRequest, page: str) -> None:
    record_event("staff.viewed_identity", actor=Actor.staff(request.user),
                 request=privacy_request, data={"page": page})


@staff_required(VIEW)
def desk(request, reference):
    privacy_request = _get(reference)
    _viewed(request, privacy_request, "request desk")
    return render(request, "staff/desk.html", desk_context(privacy_request, request.user))


@staff_required(VIEW)
def progress(request, reference):
    """The per-source progress panel alone, for the desk's polling."""
    privacy_request = get_object_or_404(PrivacyRequest, reference=reference)
    return render(request, "staff/_progress.html", {
        "privacy_request": privacy_request, **progress_context(privacy_request, request.user)})


@require_POST
@staff_required(VIEW, *RETRY_SOURCE)
def retry_source(request, reference, run_id):
    """"Retry this source": one failed source runs again (the request, if it needs
    attention, goes back to fulfilling), the others are left as they are."""
    privacy_request = _get(reference)
    run = get_object_or_404(SourceRun.objects.select_related("source"), pk=run_id,
                            request=privacy_request)
    try:
        do_retry_source(run.pk, actor=Actor.staff(request.user))
    except TransitionRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("%(source)s runs again.") % {"source": run.source.name})
    return redirect("staff:desk", reference=reference)


@require_POST
@staff_required(VIEW)
def take_step(request, reference, name):
    privacy_request = _get(reference)
    actor = Actor.staff(request.user)
    allowed = may_take(privacy_request, name, actor)
    if allowed is False:
        raise PermissionDenied
    form = _step_form(name, privacy_request, request.POST, request.FILES)
    if allowed is None and not (PrivacyRequest.step_meta(name) or {}).get("label"):
        raise Http404
    if not form.is_valid():
        if {"expected_state", "version"} & set(form.errors):
            messages.error(request, _("The form was incomplete; reload the page and try again."))
            return redirect("staff:desk", reference=reference)
        messages.error(request, _("Check the form of “%(step)s”.")
                       % {"step": _label(name)})
        _viewed(request, privacy_request, "request desk")
        return render(request, "staff/desk.html",
                      desk_context(privacy_request, request.user, bound=form), status=400)
    use_case = USE_CASES.get(name) or (lambda pk, **kw: do_transition(pk, name, **kw))
    try:
        use_case(privacy_request.pk, actor=actor,
                 expected_state=form.cleaned_data["expected_state"],
                 expected_version=form.cleaned_data["version"], **form.inputs())
    except TransitionInputError as exc:
        form.add_error(None, exc)
        _viewed(request, privacy_request, "request desk")
        return render(request, "staff/desk.html",
                      desk_context(privacy_request, request.user, bound=form), status=400)
    except TransitionRefused as exc:
        messages.error(request, str(exc))
        return redirect("staff:desk", reference=reference)
    messages.success(request, _("Done: %(step)s.") % {"step": _label(name)})
    return redirect("staff:desk", reference=reference)


@require_POST
@staff_required(VIEW, "requests_app.work_request")
def add_note(request, reference):
    privacy_request = _get(reference)
    form = NoteForm(request.POST)
    if form.is_valid():
        try:
            do_add_note(privacy_request, form.cleaned_data["text"], by=request.user)
            messages.success(request, _("Note added."))
        except (TransitionInputError, TransitionRefused) as exc:
            messages.error(request, " ".join(getattr(exc, "messages", [str(exc)])))
    else:
        messages.error(request, _("Write the note first (at most 4,000 characters)."))
    return redirect("staff:desk", reference=reference)


@require_POST
@staff_required(VIEW, "requests_app.work_request")
def notice_answer(request, reference, notice_id):
    """Record a third party's answer to a deletion or opt-out notice, given outside
    its link (a reply by email, a letter, a call; or a notice sent by hand)."""
    privacy_request = _get(reference)
    notice = get_object_or_404(ThirdPartyNotice, pk=notice_id, request=privacy_request)
    form = AnswerForm(request.POST)
    if form.is_valid():
        do_confirm_notice(notice.pk, done=form.cleaned_data["answer"] == "done",
                          note=form.cleaned_data["note"], actor=Actor.staff(request.user))
        messages.success(request, _("The answer of %(party)s is recorded.")
                         % {"party": notice.third_party.name})
    else:
        messages.error(request, _("Choose the answer; if it cannot be done, say why."))
    return redirect("staff:desk", reference=reference)


@staff_required(VIEW)
def original(request, reference):
    """The original of a request entered by staff (letter scan, email)."""
    privacy_request = get_object_or_404(PrivacyRequest, reference=reference)
    intake = IntakeRecord.objects.filter(request=privacy_request, purged_at=None).first()
    if intake is None or not intake.original_path:
        raise Http404
    safe = "".join(c for c in intake.original_name if c.isalnum() or c in "._-") or "original"
    return _stored_file(request, privacy_request, "intake original", intake.original_path,
                        safe, "application/octet-stream")


@staff_required(VIEW)
def permission(request, reference):
    """The signed permission an authorized agent uploaded on the portal."""
    privacy_request = get_object_or_404(PrivacyRequest, reference=reference)
    evidence = VerificationEvidence.objects.filter(request=privacy_request).first()
    if evidence is None or not evidence.permission_path:
        raise Http404
    extension = mimetypes.guess_extension(evidence.permission_type or "") or ".bin"
    return _stored_file(request, privacy_request, "agent permission", evidence.permission_path,
                        f"{privacy_request.reference}-permission{extension}",
                        evidence.permission_type or "application/octet-stream")


@staff_required(VIEW)
def verification_file(request, reference, kind):
    """The evidence staff attached when verifying by hand, or a parent's or
    guardian's proof; until verification ends (then they are deleted)."""
    privacy_request = get_object_or_404(PrivacyRequest, reference=reference)
    model, path, kind_type = {
        "evidence": (ManualVerification, "evidence_path", "evidence_type"),
        "guardian-proof": (GuardianDetails, "proof_path", "proof_type"),
    }.get(kind, (None, "", ""))
    row = model.objects.filter(request=privacy_request).first() if model else None
    if row is None or not getattr(row, path):
        raise Http404
    content_type = getattr(row, kind_type) or "application/octet-stream"
    extension = mimetypes.guess_extension(content_type) or ".bin"
    return _stored_file(request, privacy_request, kind.replace("-", " "), getattr(row, path),
                        f"{privacy_request.reference}-{kind}{extension}", content_type)


def _stored_file(request, privacy_request, page, relative, filename, content_type):
    """A file kept encrypted under MEDIA_ROOT, decrypted as it streams; the viewing
    is audited."""
    _viewed(request, privacy_request, page)
    response = StreamingHttpResponse(iter_decrypted(f"{settings.MEDIA_ROOT}/{relative}"),
                                     content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
