"""Requesters with no email address: the "letters to send" page (open each letter
as a PDF, mark it posted with the day), and the desk's two actions for them: add an
email address they gave later, record how their files were sent.

Managers and analysts (view_privacyrequest and work_request) work here; an auditor
sees the events in the audit area, not the letters, which hold the person's address.
"""

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from requests_app.models import PrivacyRequest
from requests_app.models.privacy_request import TransitionInputError
from requests_app.services.fulfilment.by_hand import (
    MEDIA,
    do_record_package_sent,
    to_send_by_hand,
)
from requests_app.services.notices.letters import (
    LetterRefused,
    do_mark_posted,
    do_open_letter,
    letters_posted,
    letters_to_send,
)
from requests_app.services.notices.pdf import DEFAULT_RETURN_ADDRESS, return_address
from requests_app.services.requests.contact import do_add_email
from requests_app.services.requests.lifecycle import TransitionRefused
from requests_app.staff.access import staff_required

PERMS = ("requests_app.view_privacyrequest", "requests_app.work_request")


class PostedForm(forms.Form):
    posted_on = forms.DateField(label=_lazy("Posted on"),
                                widget=forms.DateInput(attrs={"type": "date"}),
                                input_formats=["%Y-%m-%d"])


class EmailForm(forms.Form):
    email = forms.EmailField(label=_lazy("Email address the person gave"), max_length=254)


class SentForm(forms.Form):
    medium = forms.ChoiceField(label=_lazy("Sent as"), choices=[("", "---------"),
                                                                *MEDIA.items()])
    detail = forms.CharField(label=_lazy("If other: how"), required=False, max_length=200)


def by_post_panel(privacy_request: PrivacyRequest) -> dict:
    """What the desk's "by post" panel shows (staff/_by_post.html)."""
    return {"letters_waiting": letters_to_send().filter(request=privacy_request).count(),
            "by_hand": to_send_by_hand(privacy_request),
            "sent_form": SentForm(), "email_form": EmailForm()}


def _page(request):
    today = timezone.localdate()
    return render(request, "staff/letters.html", {
        "letters": letters_to_send(), "posted": letters_posted(), "today": today,
        "return_address": return_address(),
        "return_address_unset": settings.LETTER_RETURN_ADDRESS == DEFAULT_RETURN_ADDRESS})


@never_cache
@staff_required(*PERMS)
def letters(request):
    return _page(request)


@never_cache
@staff_required(*PERMS)
def letter_pdf(request, letter_id):
    """The letter as a PDF (with its code while it waits), each opening audited."""
    try:
        filename, pdf = do_open_letter(letter_id, by=request.user)
    except LetterRefused:
        raise Http404 from None
    response = HttpResponse(pdf, content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    return response


@require_POST
@staff_required(*PERMS)
def mark_posted(request, letter_id):
    form = PostedForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Give the day the letter was posted."))
        return redirect("staff:letters")
    try:
        letter = do_mark_posted(letter_id, form.cleaned_data["posted_on"], by=request.user)
    except LetterRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("The letter “%(notice)s” of %(reference)s is marked "
                                    "posted on %(day)s.")
                         % {"notice": letter.notice, "reference": letter.request.reference,
                            "day": letter.posted_on.strftime("%b %-d, %Y")})
    return redirect("staff:letters")


@require_POST
@staff_required(*PERMS)
def add_email(request, reference):
    privacy_request = get_object_or_404(PrivacyRequest, reference=reference)
    form = EmailForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Enter a valid email address."))
        return redirect("staff:desk", reference=reference)
    try:
        do_add_email(privacy_request.pk, form.cleaned_data["email"], by=request.user)
    except (TransitionInputError, TransitionRefused) as exc:
        messages.error(request, " ".join(getattr(exc, "messages", [str(exc)])))
    else:
        messages.success(request, _("The email address is added: the next notices go by "
                                    "email."))
    return redirect("staff:desk", reference=reference)


@require_POST
@staff_required(*PERMS)
def package_sent(request, reference):
    privacy_request = get_object_or_404(PrivacyRequest, reference=reference)
    form = SentForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Choose how the files were sent."))
        return redirect("staff:desk", reference=reference)
    try:
        do_record_package_sent(privacy_request.pk, form.cleaned_data["medium"],
                               form.cleaned_data["detail"], by=request.user)
    except (TransitionInputError, TransitionRefused) as exc:
        messages.error(request, " ".join(getattr(exc, "messages", [str(exc)])))
    else:
        messages.success(request, _("Recorded: the files were sent as “%(medium)s”.")
                         % {"medium": MEDIA[form.cleaned_data["medium"]]})
    return redirect("staff:desk", reference=reference)
