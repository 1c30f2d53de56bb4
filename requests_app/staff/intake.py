"""Staff intake: a request that came by email, postal letter or phone, entered by
hand with its original, the time it reached us (which starts the clock, however
late it is entered) and, when staff verified the person, how."""

import datetime

from django import forms
from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy

from requests_app.models import Actor, Channel, DataSource, FiledBy, IntakeRecord
from requests_app.models.privacy_request import TransitionInputError
from requests_app.rules import jurisdiction_choices, request_type_choices
from requests_app.services.requests.filing import MAX_EXTRA, NewRequest, validate_one_line
from requests_app.services.requests.lifecycle import TransitionRefused
from requests_app.services.requests.desk import MAX_ORIGINAL, do_staff_intake
from requests_app.models.verification import LEVEL_CHOICES, POINT_CHOICES, check_child
from requests_app.services.verification.manual import do_verify_manually
from requests_app.staff.access import staff_required
from requests_app.uploads import checked_type

EXTRA_PREFIX = "identity__"  # the form fields of the office's own identity types
OLDEST_DAYS = 366  # a date of receipt further back is refused as a typo
CHANNELS = [(Channel.EMAIL.value, Channel.EMAIL.label), (Channel.POST.value, Channel.POST.label),
            (Channel.PHONE.value, Channel.PHONE.label)]


class IntakeForm(forms.Form):
    channel = forms.ChoiceField(label=_lazy("It came by"), choices=CHANNELS,
                                widget=forms.RadioSelect)
    received_at = forms.DateTimeField(
        label=_lazy("When it reached us"),
        help_text=_lazy("The date on the email, the day the letter arrived, the time of the "
                        "call. The deadlines count from here."),
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"},
                                   format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d"])
    request_type = forms.ChoiceField(label=_lazy("What they ask for"),
                                     choices=request_type_choices)
    jurisdiction = forms.ChoiceField(
        label=_lazy("Where they live"),
        choices=jurisdiction_choices)
    filed_by = forms.ChoiceField(label=_lazy("Filed by"), choices=FiledBy.choices,
                                 initial=FiledBy.SELF)
    # Single-line answers refuse line breaks and control characters (as the portal).
    name = forms.CharField(label=_lazy("Name"), max_length=200, validators=[validate_one_line])
    email = forms.EmailField(label=_lazy("Email"), required=False,
                             help_text=_lazy("Where the notices go. If the letter or call "
                                             "gave none, leave it empty and give the postal "
                                             "address: every notice becomes a letter to post "
                                             "(Letters to send), the identity is verified "
                                             "by staff and the files are sent by hand."))
    phone = forms.CharField(label=_lazy("Phone"), max_length=40, required=False,
                            validators=[validate_one_line])
    account_number = forms.CharField(label=_lazy("Customer or account number"), max_length=64,
                                     required=False, validators=[validate_one_line])
    postal_address = forms.CharField(label=_lazy("Postal address"), required=False,
                                     max_length=500, widget=forms.Textarea(attrs={"rows": 3}))
    details = forms.CharField(label=_lazy("What they wrote or said"), required=False,
                              max_length=2000, widget=forms.Textarea(attrs={"rows": 4}))
    original = forms.FileField(
        label=_lazy("The original"), required=False,
        help_text=_lazy("The email (.eml or PDF) or a scan of the letter, at most 20 MB. "
                        "Stored encrypted."))
    call_note = forms.CharField(label=_lazy("Note of the call"), required=False,
                                max_length=4000, widget=forms.Textarea(attrs={"rows": 3}))
    verification_method = forms.ChoiceField(
        label=_lazy("Identity verified by staff"), choices=IntakeRecord.Method.choices,
        required=False)
    verification_points = forms.MultipleChoiceField(
        label=_lazy("Data points checked"), choices=POINT_CHOICES, required=False,
        widget=forms.CheckboxSelectMultiple)
    verification_level = forms.ChoiceField(
        label=_lazy("Degree of certainty reached"), choices=[("", "---------"), *LEVEL_CHOICES],
        required=False)
    child_name = forms.CharField(label=_lazy("The child's name"), max_length=200,
                                 required=False, validators=[validate_one_line])
    child_birth_date = forms.DateField(
        label=_lazy("The child's date of birth"), required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text=_lazy("Only for a parent or guardian: the child must be under 13 on the "
                        "day the request reached us."))
    guardian_proof = forms.FileField(
        label=_lazy("The parent's or guardian's proof"), required=False,
        help_text=_lazy("PDF, PNG or JPEG, at most 20 MB. Stored encrypted, deleted when "
                        "verification ends."))
    verification_evidence = forms.CharField(
        label=_lazy("Evidence"), required=False, max_length=4000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_lazy("Which data points matched, which document was seen, which number "
                        "was called back."))

    def __init__(self, *args, identity_types: dict | None = None, **kwargs):
        """`identity_types`: the office's own types its sources look people up by
        (DataSource.identity_types: {"loyalty_id": "Loyalty card number"})."""
        super().__init__(*args, **kwargs)
        self.identity_types = identity_types or {}
        for name, label in self.identity_types.items():
            self.fields[EXTRA_PREFIX + name] = forms.CharField(
                label=label, required=False, max_length=MAX_EXTRA, validators=[validate_one_line],
                help_text=_("Looked up in the sources whose maps name it."))

    def extra_identity_fields(self):
        return [self[EXTRA_PREFIX + name] for name in self.identity_types]

    def extra_identity(self) -> dict:
        return {name: self.cleaned_data.get(EXTRA_PREFIX + name, "").strip()
                for name in self.identity_types
                if self.cleaned_data.get(EXTRA_PREFIX + name, "").strip()}

    def clean_received_at(self):
        value = self.cleaned_data["received_at"]
        if value > timezone.now():
            raise forms.ValidationError(_("The time it reached us cannot be in the future."))
        if value < timezone.now() - datetime.timedelta(days=OLDEST_DAYS):
            # A typo (0001, 1926), not a request whose answer is years overdue.
            raise forms.ValidationError(_("That is more than a year ago: check the date."))
        return value

    def clean_original(self):
        upload = self.cleaned_data.get("original")
        if upload is not None and upload.size > MAX_ORIGINAL:
            raise forms.ValidationError(_("The original is larger than 20 MB."))
        return upload

    def clean_guardian_proof(self):
        upload = self.cleaned_data.get("guardian_proof")
        if upload:
            upload.sniffed_type = checked_type(upload, MAX_ORIGINAL, _("The proof"))
        return upload or None

    def _clean_guardian(self, data):
        if not data.get("child_name"):
            self.add_error("child_name", _("Enter the child's name."))
        if data.get("child_birth_date") is None and "child_birth_date" not in self.errors:
            self.add_error("child_birth_date", _("Enter the child's date of birth."))
        elif data.get("child_birth_date") and data.get("received_at"):
            try:
                check_child(data["child_birth_date"], timezone.localdate(data["received_at"]))
            except forms.ValidationError as exc:
                self.add_error("child_birth_date", exc)
        if not data.get("guardian_proof") and "guardian_proof" not in self.errors:
            self.add_error("guardian_proof", _("Attach the parent's or guardian's proof."))

    def clean(self):
        data = super().clean()
        channel = data.get("channel")
        if channel in (Channel.EMAIL, Channel.POST) and not data.get("original"):
            self.add_error("original", _("Attach the email or the scan of the letter."))
        if channel == Channel.PHONE and not (data.get("call_note", "").strip()
                                             or data.get("original")):
            self.add_error("call_note", _("Write a note of the call (or attach a recording)."))
        if not data.get("email") and "email" not in self.errors and not any(
                data.get(f, "").strip() for f in ("phone", "account_number", "postal_address")
        ) and not self.extra_identity():
            self.add_error("email", _("Give an email address or another identifier to find "
                                      "the person by."))
        elif (not data.get("email") and "email" not in self.errors
              and not data.get("postal_address", "").strip()):
            self.add_error("postal_address", _("Without an email address, give the postal "
                                               "address: every notice goes by letter."))
        if data.get("filed_by") == FiledBy.PARENT:
            self._clean_guardian(data)
        if data.get("verification_method") and not data.get("verification_level"):
            self.add_error("verification_level", _("Say what degree of certainty was reached."))
        if data.get("verification_method") and not data.get("verification_evidence",
                                                             "").strip():
            self.add_error("verification_evidence",
                           _("Describe the evidence the identity was verified with."))
        return data


def _verify(user, privacy_request, data) -> str:
    """Verify at once when staff said how (the same step, and the same degree of
    certainty, as on the desk); why not, in words, when it falls short."""
    if not data["verification_method"]:
        return ""
    try:
        do_verify_manually(privacy_request.pk, "verify_manually", actor=Actor.staff(user),
                           methods=[data["verification_method"]],
                           points=data["verification_points"],
                           level=data["verification_level"])
    except (TransitionInputError, TransitionRefused) as exc:
        return " ".join(getattr(exc, "messages", [str(exc)]))
    privacy_request.refresh_from_db()
    return ""


def _guardian(data) -> dict | None:
    if data["filed_by"] != FiledBy.PARENT:
        return None
    return {"child_name": data["child_name"], "child_birth_date": data["child_birth_date"],
            "proof": data["guardian_proof"]}


@staff_required("requests_app.view_privacyrequest", "requests_app.work_request")
def intake(request):
    form = IntakeForm(request.POST or None, request.FILES or None,
                      identity_types=DataSource.identity_types())
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        new = NewRequest(
            request_type=data["request_type"], jurisdiction=data["jurisdiction"],
            channel=data["channel"], filed_by=data["filed_by"], name=data["name"],
            email=data["email"], phone=data["phone"], account_number=data["account_number"],
            postal_address=data["postal_address"], extra=form.extra_identity(),
            details=data["details"], received_at=data["received_at"])
        try:
            privacy_request = do_staff_intake(
                new, by=request.user, original=data.get("original"),
                call_note=data["call_note"], verification_method=data["verification_method"],
                evidence=data["verification_evidence"], guardian=_guardian(data))
            why = _verify(request.user, privacy_request, data)
        except (TransitionInputError, TransitionRefused) as exc:
            form.add_error(None, " ".join(getattr(exc, "messages", [str(exc)])))
        else:
            messages.success(request, _("Request %(reference)s entered; due %(due)s.") % {
                "reference": privacy_request.reference,
                "due": privacy_request.current_due_on.strftime("%b %-d, %Y")})
            if why:
                messages.warning(request, _("Entered, but not verified: %(why)s") % {"why": why})
            if privacy_request.duplicate_of_id:
                messages.warning(request, _("It looks like a duplicate of %(reference)s, "
                                            "which is still open.")
                                 % {"reference": privacy_request.duplicate_of.reference})
            return redirect("staff:desk", reference=privacy_request.reference)
    status = 400 if request.method == "POST" else 200
    return render(request, "staff/intake.html", {"form": form}, status=status)
