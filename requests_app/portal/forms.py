"""The portal's forms. Every message says what to do about the problem."""

import datetime
import re

from dateutil.relativedelta import relativedelta
from django import forms
from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from requests_app.models import DataSource
from requests_app.models.privacy_request import FiledBy
from requests_app.portal.guardian import GuardianFields
from requests_app.rules import (
    KNOW_DEFAULT_MONTHS,
    KNOW_EARLIEST,
    PLAIN_LABELS,
    REQUEST_TYPES,
    know_period_applies,
)
from requests_app.services.requests.filing import MAX_EXTRA, validate_one_line
from requests_app.services.verification.portal import Submission, correction_details

# The rights, in the words the form uses (rules.PLAIN_LABELS: the emails use them too).
RIGHT_LABELS = PLAIN_LABELS


def right_choices():
    return [(code, RIGHT_LABELS.get(code, t.label)) for code, t in REQUEST_TYPES.items()]


# Where the person lives, and the jurisdiction whose rules apply.
RESIDENCE = [
    ("CA", _("California"), "CA"),
    ("CO", _("Colorado"), "CO"),
    ("CT", _("Connecticut"), "CT"),
    ("TX", _("Texas"), "TX"),
    ("VA", _("Virginia"), "VA"),
    ("US", _("Another US state"), "US_OTHER"),
    ("EU", _("A country of the European Union, or the United Kingdom"), "GDPR"),
    ("XX", _("Another country"), "UNKNOWN"),
]
JURISDICTION_OF = {code: jurisdiction for code, _label, jurisdiction in RESIDENCE}

CORRECTABLE = [
    ("name", _("My name")),
    ("email", _("My email address")),
    ("phone", _("My phone number")),
    ("account_number", _("My customer or account number")),
    ("postal_address", _("My postal address")),
    ("other", _("Something else")),
]

# Signed permission of an agent: the type is read from the first bytes.
SIGNATURES = [
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
]


def sniff(upload) -> str | None:
    upload.seek(0)
    head = upload.read(16)
    upload.seek(0)
    for magic, content_type in SIGNATURES:
        if head.startswith(magic):
            return content_type
    return None


def _clean_text(value: str) -> str:
    # No control characters other than line breaks and tabs (and never NUL).
    return re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", "", value or "").strip()


def _one_line(value: str) -> str:
    validate_one_line(value)
    return value.strip()


def default_period() -> tuple[datetime.date, datetime.date]:
    today = timezone.localdate()
    start = max(today - relativedelta(months=KNOW_DEFAULT_MONTHS),
                datetime.date.fromisoformat(KNOW_EARLIEST))
    return start, today


# The period a Californian's request to know covers (rules.KNOW_DEFAULT_MONTHS by
# default; everything since rules.KNOW_EARLIEST in one click, no script needed).
RECENT, SINCE_EARLIEST, DATES = "recent", "since_2022", "dates"
PERIOD_CHOICES = [
    (RECENT, _("The last 12 months")),
    (SINCE_EARLIEST, _("Everything since January 1, 2022")),
    (DATES, _("The dates I give here")),
]

EXTRA_PREFIX = "identity__"  # the form fields of the office's own identity types


def portal_identity_types() -> dict[str, str]:
    """The office's own identity types the portal asks for: those its enabled
    sources look people up by that PORTAL_IDENTITY_TYPES allows (none by default:
    staff intake offers them all)."""
    allowed = set(settings.PORTAL_IDENTITY_TYPES)
    if not allowed:
        return {}
    return {n: label for n, label in DataSource.identity_types().items() if n in allowed}


class PortalForm(forms.Form):
    """No colon after labels (they are questions or names, on their own line)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


class DateInput(forms.DateInput):
    input_type = "date"


class RequestForm(GuardianFields, PortalForm):
    rights = forms.MultipleChoiceField(
        label=_("What would you like us to do?"), choices=right_choices,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("Choose one or more. Each becomes its own request with its own reference."),
        error_messages={"required": _("Choose at least one thing you would like us to do."),
                        "invalid_choice": _("Choose from the list.")})
    residence = forms.ChoiceField(
        label=_("Where do you live?"),
        choices=[("", _("Choose your state or country"))] + [(c, label) for c, label, _j
                                                             in RESIDENCE],
        help_text=_("The law of where you live sets our deadlines."),
        error_messages={"required": _("Choose the state or country where you live."),
                        "invalid_choice": _("Choose the state or country where you live from "
                                            "the list.")})
    name = forms.CharField(
        label=_("Your full name"), max_length=200,
        error_messages={"required": _("Enter your full name."),
                        "max_length": _("Enter a name of at most 200 characters.")})
    email = forms.EmailField(
        label=_("Your email address"), max_length=254,
        help_text=_("We send a code to this address to confirm it is yours."),
        error_messages={"required": _("Enter your email address."),
                        "invalid": _("Enter an email address like name@example.com."),
                        "max_length": _("Enter an email address of at most 254 characters.")})
    phone = forms.CharField(
        label=_("Phone number (optional)"), max_length=40, required=False,
        help_text=_("Helps us confirm who you are."),
        error_messages={"max_length": _("Enter a phone number of at most 40 characters.")})
    account_number = forms.CharField(
        label=_("Customer or account number (optional)"), max_length=64, required=False,
        help_text=_("Helps us confirm who you are."),
        error_messages={"max_length": _("Enter an account number of at most 64 characters.")})
    postal_address = forms.CharField(
        label=_("Postal address (optional)"), max_length=500, required=False,
        widget=forms.Textarea(attrs={"rows": 3}), help_text=_("Helps us confirm who you are."),
        error_messages={"max_length": _("Enter an address of at most 500 characters.")})
    filed_by = forms.ChoiceField(
        label=_("Who is making this request?"), widget=forms.RadioSelect, initial=FiledBy.SELF,
        choices=[(FiledBy.SELF, _("I am asking for myself")),
                 (FiledBy.AGENT, _("I am an authorized agent acting for someone")),
                 (FiledBy.PARENT, _("I am a parent or guardian of a child under 13"))],
        error_messages={"required": _("Say who is making this request."),
                        "invalid_choice": _("Say who is making this request.")})
    agent_name = forms.CharField(
        label=_("Agent's name"), max_length=200, required=False,
        help_text=_("Only for an authorized agent. The name and email above are the "
                    "person's."),
        error_messages={"max_length": _("Enter a name of at most 200 characters.")})
    agent_email = forms.EmailField(
        label=_("Agent's email address"), max_length=254, required=False,
        error_messages={"invalid": _("Enter the agent's email address like "
                                     "name@example.com.")})
    permission = forms.FileField(
        label=_("Signed permission from the person (PDF, PNG or JPEG, at most 5 MB)"),
        required=False,
        error_messages={"invalid": _("The signed permission could not be read; upload a PDF, "
                                     "PNG or JPEG file."),
                        "empty": _("The signed permission file is empty.")})
    period_choice = forms.ChoiceField(
        label=_("Which period should we cover?"), required=False, widget=forms.RadioSelect,
        choices=PERIOD_CHOICES, initial=RECENT,
        help_text=_("If you live in California, the law lets us cover the last 12 months "
                    "unless you ask for more: choose “Everything since January 1, 2022” to "
                    "get all of it. If you live anywhere else, we cover all the information "
                    "we hold about you, whatever its date, and this choice does not apply."),
        error_messages={"invalid_choice": _("Choose one of the periods.")})
    period_start = forms.DateField(
        label=_("From"), required=False, widget=DateInput,
        help_text=_("Only with “The dates I give here”: at the earliest January 1, 2022."),
        error_messages={"invalid": _("Enter the start date as YYYY-MM-DD.")})
    period_end = forms.DateField(
        label=_("To"), required=False, widget=DateInput,
        error_messages={"invalid": _("Enter the end date as YYYY-MM-DD.")})
    corrected_field = forms.ChoiceField(
        label=_("Which information is wrong?"), required=False,
        choices=[("", _("Choose"))] + CORRECTABLE,
        error_messages={"invalid_choice": _("Choose which information is wrong from the list.")})
    correction_wrong = forms.CharField(
        label=_("What is wrong"), max_length=2000, required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        error_messages={"max_length": _("Write at most 2,000 characters.")})
    correction_right = forms.CharField(
        label=_("What it should say"), max_length=2000, required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        error_messages={"max_length": _("Write at most 2,000 characters.")})
    declaration = forms.BooleanField(
        label=_("I declare under penalty of perjury that I am the person this request is "
                "about, or am authorized to act for them."),
        required=False,
        help_text=_("Needed to receive a copy of your information or your files."))
    details = forms.CharField(
        label=_("Anything else we should know? (optional)"), max_length=2000, required=False,
        widget=forms.Textarea(attrs={"rows": 4, "maxlength": 2000}),
        error_messages={"max_length": _("Write at most 2,000 characters (you wrote "
                                        "%(show_value)d).")})
    # Never shown to people (hidden by CSS and from screen readers); bots fill it in.
    website = forms.CharField(required=False, label=_("Leave this empty"), max_length=200,
                              widget=forms.TextInput(attrs={"tabindex": "-1",
                                                            "autocomplete": "off"}))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        start, end = default_period()
        self.fields["period_start"].initial = start
        self.fields["period_end"].initial = end
        self.identity_types = portal_identity_types()
        for name, label in self.identity_types.items():
            self.fields[EXTRA_PREFIX + name] = forms.CharField(
                label=_("%(label)s (optional)") % {"label": label}, required=False,
                max_length=MAX_EXTRA, help_text=_("Helps us confirm who you are."),
                validators=[validate_one_line],
                error_messages={"max_length": _("Enter at most %(limit)d characters.")
                                % {"limit": MAX_EXTRA}})

    def extra_identity_fields(self):
        return [self[EXTRA_PREFIX + name] for name in self.identity_types]

    def extra_identity(self) -> dict:
        values = {name: self.cleaned_data.get(EXTRA_PREFIX + name, "").strip()
                  for name in self.identity_types}
        return {name: value for name, value in values.items() if value}

    def clean_name(self):
        value = _one_line(self.cleaned_data["name"])
        if not value:
            raise forms.ValidationError(_("Enter your full name."))
        return value

    def clean_phone(self):
        value = _one_line(self.cleaned_data["phone"])
        if value and not re.fullmatch(r"[0-9+()\-. ]{7,40}", value) or (
                value and len(re.sub(r"\D", "", value)) < 7):
            raise forms.ValidationError(_("Enter a phone number using digits, spaces and + ( ) "
                                          "- only, at least 7 digits."))
        return value

    def clean_account_number(self):
        return _one_line(self.cleaned_data["account_number"])

    def clean_postal_address(self):
        return _clean_text(self.cleaned_data["postal_address"])

    def clean_details(self):
        return _clean_text(self.cleaned_data["details"])

    def clean_agent_name(self):
        return _one_line(self.cleaned_data["agent_name"])

    def clean_correction_wrong(self):
        return _clean_text(self.cleaned_data["correction_wrong"])

    def clean_correction_right(self):
        return _clean_text(self.cleaned_data["correction_right"])

    def clean_permission(self):
        upload = self.cleaned_data.get("permission")
        if not upload:
            return None
        if upload.size > settings.AGENT_PERMISSION_MAX_BYTES:
            raise forms.ValidationError(_("The signed permission is too large: upload a file "
                                          "of at most 5 MB."))
        content_type = sniff(upload)
        if content_type is None:
            raise forms.ValidationError(_("The signed permission must be a PDF, PNG or JPEG "
                                          "file; this file is of another type, whatever its "
                                          "name says."))
        upload.sniffed_type = content_type
        return upload

    def clean(self):
        data = super().clean()
        rights = data.get("rights") or []
        if data.get("filed_by") == FiledBy.AGENT:
            if not data.get("agent_name"):
                self.add_error("agent_name", _("Enter the agent's name."))
            if not data.get("agent_email") and "agent_email" not in self.errors:
                self.add_error("agent_email", _("Enter the agent's email address."))
            if not data.get("permission") and "permission" not in self.errors:
                self.add_error("permission", _("Upload the person's signed permission for the "
                                               "agent."))
        if data.get("filed_by") == FiledBy.PARENT:
            self.clean_guardian_section(data)
        self._clean_period(data, rights)
        corrects = any(REQUEST_TYPES[r].corrects_a_field for r in rights)
        if corrects:
            if not data.get("corrected_field") and "corrected_field" not in self.errors:
                self.add_error("corrected_field", _("Choose which information is wrong."))
            if not data.get("correction_wrong") and "correction_wrong" not in self.errors:
                self.add_error("correction_wrong", _("Say what is wrong."))
            if not data.get("correction_right") and "correction_right" not in self.errors:
                self.add_error("correction_right", _("Say what it should say."))
        if corrects and not self.errors:
            size = len(correction_details(
                data.get("corrected_field", ""), data.get("correction_wrong", ""),
                data.get("correction_right", ""), data.get("details", "")))
            if size > 2000:
                self.add_error("details", _("Together with the correction, write at most 2,000 "
                                            "characters (%(size)d now): shorten the details "
                                            "or the correction.") % {"size": size})
        if any(REQUEST_TYPES[r].takes_declaration for r in rights) and not data.get("declaration"):
            self.add_error("declaration", _("To receive a copy of your information, tick the "
                                            "declaration."))
        return data

    def _clean_period(self, data: dict, rights: list) -> None:
        """The period a request to know covers: only where the jurisdiction limits it
        (California), as chosen; elsewhere none (all the data held)."""
        jurisdiction = JURISDICTION_OF.get(data.get("residence") or "", "")
        if not (any(REQUEST_TYPES[r].covers_period for r in rights)
                and know_period_applies(jurisdiction)):
            data["period_start"] = data["period_end"] = None
            return
        start, end = default_period()
        choice = data.get("period_choice") or (
            DATES if data.get("period_start") or data.get("period_end") else RECENT)
        if choice == SINCE_EARLIEST:
            start = datetime.date.fromisoformat(KNOW_EARLIEST)
        if choice != DATES:
            data["period_start"], data["period_end"] = start, end
            return
        first = data.get("period_start") or start
        last = data.get("period_end") or end
        earliest = datetime.date.fromisoformat(KNOW_EARLIEST)
        if "period_start" not in self.errors and first < earliest:
            self.add_error("period_start", _("The period can start on January 1, 2022 at "
                                             "the earliest."))
        elif "period_end" not in self.errors and last > timezone.localdate():
            self.add_error("period_end", _("The period cannot end in the future."))
        elif "period_start" not in self.errors and first > last:
            self.add_error("period_start", _("The start date must be before the end date."))
        data["period_start"], data["period_end"] = first, last

    def submission(self) -> Submission:
        """The cleaned form as the use case takes it (services/verification/portal.py)."""
        data = self.cleaned_data
        agent = data["filed_by"] == "agent"
        parent = data["filed_by"] == FiledBy.PARENT
        return Submission(
            rights=[code for code in REQUEST_TYPES if code in data["rights"]],
            jurisdiction=JURISDICTION_OF[data["residence"]],
            name=data["name"], email=data["email"], phone=data["phone"],
            account_number=data["account_number"], postal_address=data["postal_address"],
            extra=self.extra_identity(),
            details=data["details"], filed_by=data["filed_by"],
            agent_name=data["agent_name"] if agent else "",
            agent_email=data["agent_email"] if agent else "",
            permission=data["permission"] if agent else None,
            period_start=data["period_start"], period_end=data["period_end"],
            corrected_field=data["corrected_field"], correction_wrong=data["correction_wrong"],
            correction_right=data["correction_right"], declaration=data["declaration"],
            child_name=data["child_name"] if parent else "",
            child_birth_date=data["child_birth_date"] if parent else None,
            guardian_proof=data["guardian_proof"] if parent else None,
            guardian_consents=self.guardian_consents() if parent else [])


class CodeForm(PortalForm):
    reference = forms.CharField(
        label=_("Reference"), max_length=24,
        help_text=_("It looks like PP-7K2D-9QXM-4TRB-H1VC and is in our email."),
        error_messages={"required": _("Enter the reference from our email."),
                        "max_length": _("Enter the reference from our email, like "
                                        "PP-7K2D-9QXM-4TRB-H1VC.")})
    code = forms.CharField(
        label=_("Code from the email"), max_length=20,
        widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "one-time-code"}),
        error_messages={"required": _("Enter the code from our email."),
                        "max_length": _("Enter the digits of the code from our email.")})

    def clean_reference(self):
        return normalise_reference(self.cleaned_data["reference"])

    def clean_code(self):
        value = "".join(self.cleaned_data["code"].split())
        if not re.fullmatch(r"\d{6,10}", value):
            raise forms.ValidationError(_("Enter the digits of the code from our email."))
        return value


REFERENCE_SHAPE = re.compile(r"PP-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}")


def is_reference(value: str) -> bool:
    """Whether a (normalised) value has the shape of a reference."""
    return bool(REFERENCE_SHAPE.fullmatch(value or ""))


class ReferenceForm(PortalForm):
    reference = CodeForm.base_fields["reference"]

    def clean_reference(self):
        value = normalise_reference(self.cleaned_data["reference"])
        if not is_reference(value):
            raise forms.ValidationError(_("Enter the reference from our email, like "
                                          "PP-7K2D-9QXM-4TRB-H1VC."))
        return value


class AppealForm(PortalForm):
    text = forms.CharField(
        label=_("Why do you disagree with our decision?"), max_length=2000,
        widget=forms.Textarea(attrs={"rows": 5, "maxlength": 2000}),
        error_messages={"required": _("Say why you disagree with the decision."),
                        "max_length": _("Write at most 2,000 characters.")})

    def clean_text(self):
        value = _clean_text(self.cleaned_data["text"])
        if not value:
            raise forms.ValidationError(_("Say why you disagree with the decision."))
        return value


def normalise_reference(value: str) -> str:
    """Upper case, dashes where they belong; the letters people confuse with digits
    (O, I, L) read as Crockford's base32 reads them."""
    bare = re.sub(r"[^0-9A-Za-z]", "", value or "").upper()
    if bare.startswith("PP"):
        bare = bare[2:]
    bare = bare.translate(str.maketrans("OIL", "011"))
    if len(bare) == 16:
        return "PP-" + "-".join(bare[i:i + 4] for i in range(0, 16, 4))
    return (value or "").strip().upper()[:24]
