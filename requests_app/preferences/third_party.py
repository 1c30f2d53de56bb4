"""The page a third party reaches from a deletion or opt-out notice, to confirm it
is done (or say why it cannot be). Confirmation is a POST: mail scanners that
fetch links do not confirm anything."""

import datetime

from django import forms
from django.conf import settings
from django.core import signing
from django.shortcuts import render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from requests_app.models import ThirdPartyNotice
from requests_app.services.notices.staff import CONFIRM_SALT, do_confirm_notice


class AnswerForm(forms.Form):
    answer = forms.ChoiceField(label=_("Your answer"), widget=forms.RadioSelect, choices=[
        ("done", _("Done: we have acted on it")),
        ("impossible", _("We cannot act on it")),
    ])
    note = forms.CharField(label=_("If you cannot, why not?"), required=False, max_length=1000,
                           widget=forms.Textarea(attrs={"rows": 3}))

    def clean(self):
        data = super().clean()
        if data.get("answer") == "impossible" and not data.get("note", "").strip():
            self.add_error("note", _("Say why it cannot be done."))
        return data


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def confirm(request, token: str):
    try:
        notice_id = signing.loads(token, salt=CONFIRM_SALT,
                                  max_age=datetime.timedelta(days=settings.THIRD_PARTY_LINK_DAYS))
        notice = ThirdPartyNotice.objects.select_related("request", "third_party").get(
            pk=notice_id)
    except signing.SignatureExpired:  # the privacy office records a reply by hand
        return render(request, "preferences/third_party_refused.html", {"expired": True},
                      status=410)
    except (signing.BadSignature, ThirdPartyNotice.DoesNotExist, TypeError, ValueError):
        return render(request, "preferences/third_party_refused.html", status=400)
    form = AnswerForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        notice = do_confirm_notice(notice.pk, done=form.cleaned_data["answer"] == "done",
                                   note=form.cleaned_data["note"])
    return render(request, "preferences/third_party.html", {"notice": notice, "form": form})
