"""The request form's section for a parent or guardian of a child under 13 (issue 15,
item 11; CCPA regs §7070): the child's name and date of birth (under 13 on the day
of the request), the guardian's proof (a PDF, PNG or JPEG, encrypted at rest,
deleted when verification ends) and, for each opt-in purpose, the guardian's
affirmative consent for the child (never pre-ticked; it takes effect once staff
have verified them as the child's parent or guardian)."""

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from requests_app.models import Purpose
from requests_app.models.verification import check_child
from requests_app.uploads import checked_type


def opt_in_choices() -> list[tuple[str, str]]:
    """("<slug>:<notice version>", the notice's words) for each active opt-in purpose."""
    choices = []
    for purpose in Purpose.objects.filter(active=True, basis=Purpose.Basis.OPT_IN):
        notice = purpose.current_notice
        if notice is not None:
            choices.append((f"{purpose.slug}:{notice.version}", f"{purpose.name}: {notice.text}"))
    return choices


class GuardianFields(forms.Form):
    child_name = forms.CharField(
        label=_("The child's full name"), max_length=200, required=False,
        error_messages={"max_length": _("Enter a name of at most 200 characters.")})
    child_birth_date = forms.DateField(
        label=_("The child's date of birth"), required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text=_("The child must be under 13 on the day of the request."),
        error_messages={"invalid": _("Enter the child's date of birth as YYYY-MM-DD.")})
    guardian_proof = forms.FileField(
        label=_("Proof that you are the child's parent or guardian (PDF, PNG or JPEG, at "
                "most 5 MB)"), required=False,
        help_text=_("For example the child's birth certificate naming you, or a court order. "
                    "Stored encrypted and deleted once we have checked it."),
        error_messages={"invalid": _("The proof could not be read; upload a PDF, PNG or JPEG "
                                     "file."),
                        "empty": _("The proof file is empty: upload it again.")})
    guardian_consent = forms.MultipleChoiceField(
        label=_("Your consent for the child (optional)"), required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("Tick only what you agree to. Nothing is ticked for you, and your consent "
                    "counts only once we have confirmed you are the child's parent or "
                    "guardian."),
        error_messages={"invalid_choice": _("Choose from the list.")})

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["guardian_consent"].choices = opt_in_choices()

    def clean_child_name(self):
        value = self.cleaned_data["child_name"]
        if any(c in value for c in "\r\n\x00") or any(ord(c) < 32 for c in value):
            raise ValidationError(_("Enter the name on one line."))
        return value.strip()

    def clean_guardian_proof(self):
        upload = self.cleaned_data.get("guardian_proof")
        if not upload:
            return None
        upload.sniffed_type = checked_type(upload, settings.AGENT_PERMISSION_MAX_BYTES,
                                           _("The proof"))
        return upload

    def clean_guardian_section(self, data: dict) -> None:
        """For a parent or guardian: the child and the proof are required."""
        if not data.get("child_name") and "child_name" not in self.errors:
            self.add_error("child_name", _("Enter the child's full name."))
        birth = data.get("child_birth_date")
        if birth is None and "child_birth_date" not in self.errors:
            self.add_error("child_birth_date", _("Enter the child's date of birth."))
        elif birth is not None:
            try:
                data["child_age"] = check_child(birth, timezone.localdate())
            except ValidationError as exc:
                self.add_error("child_birth_date", exc)
        if not data.get("guardian_proof") and "guardian_proof" not in self.errors:
            self.add_error("guardian_proof", _("Upload your proof that you are the child's "
                                               "parent or guardian."))

    def guardian_consents(self) -> list[dict]:
        given = []
        for value in self.cleaned_data.get("guardian_consent") or ():
            slug, version = value.rsplit(":", 1)
            given.append({"purpose": slug, "notice": int(version)})
        return given
