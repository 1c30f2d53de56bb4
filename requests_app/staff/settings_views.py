"""A staff member's own settings: which emails about requests they receive (the
daily digest of what is coming due, the email when a request is assigned to
them; services/notices/reminders.py)."""

from django import forms
from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _

from requests_app.models import StaffEmailSettings
from requests_app.staff.access import staff_required


class EmailSettingsForm(forms.ModelForm):
    class Meta:
        model = StaffEmailSettings
        fields = ["daily_digest", "on_assignment"]


@staff_required()
def staff_settings(request):
    own = StaffEmailSettings.of(request.user)
    form = EmailSettingsForm(request.POST or None, instance=own)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, _("Your email settings are saved."))
        return redirect("staff:settings")
    return render(request, "staff/settings.html", {"form": form, "email": request.user.email})
