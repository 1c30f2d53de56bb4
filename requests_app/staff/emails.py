"""Email templates for the consumer, edited by Privacy Managers: a preview on a
sample request, then a new version (services/notices/templates.py)."""

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy
from django.views.decorators.http import require_POST

from requests_app.models import EmailTemplateVersion
from requests_app.services.notices import templates as email_templates
from requests_app.staff.access import staff_required

MANAGE = "requests_app.manage_email_templates"


class TemplateForm(forms.Form):
    subject = forms.CharField(label=_lazy("Subject"), max_length=300)
    body_text = forms.CharField(label=_lazy("Text"), widget=forms.Textarea(attrs={"rows": 14}),
                                max_length=20000)
    body_html = forms.CharField(label=_lazy("HTML"), widget=forms.Textarea(attrs={"rows": 14}),
                                max_length=40000)
    comment = forms.CharField(label=_lazy("What changed"), max_length=200, required=False)


@staff_required(MANAGE)
def email_list(request):
    versions = {}
    for version in EmailTemplateVersion.objects.order_by("notice", "-number"):
        versions.setdefault(version.notice, version)
    rows = [{"notice": n, "current": versions.get(n)} for n in email_templates.notices()]
    return render(request, "staff/email_list.html", {"rows": rows})


@staff_required(MANAGE)
def email_edit(request, notice):
    if notice not in email_templates.notices():
        raise Http404
    history = list(EmailTemplateVersion.objects.filter(notice=notice)
                   .select_related("created_by").order_by("-number"))
    preview = None
    if request.method == "POST":
        form = TemplateForm(request.POST)
        if form.is_valid():
            sources = {part: form.cleaned_data[part] for part in email_templates.PARTS}
            try:
                if "save" in request.POST:
                    version = email_templates.save_version(
                        notice, sources, comment=form.cleaned_data["comment"],
                        user=request.user)
                    messages.success(request, _("Saved as %(version)s; it is sent from now on.")
                                     % {"version": version.label})
                    return redirect("staff:email_edit", notice=notice)
                subject, text, html = email_templates.sample_render(sources)
                preview = {"subject": subject, "text": text, "html": html}
            except ValidationError as exc:
                form.add_error(None, exc)
    else:
        start = email_templates.current_sources(notice)
        base = request.GET.get("from", "")
        if base.isdigit():
            old = next((v for v in history if v.number == int(base) and not v.use_default), None)
            if old is not None:
                start = {part: getattr(old, part) for part in email_templates.PARTS}
        form = TemplateForm(initial=start)
    current = history[0] if history else None
    return render(request, "staff/email_edit.html", {
        "notice": notice, "form": form, "preview": preview, "history": history,
        "current_label": current.label if current else "default",
    }, status=400 if request.method == "POST" and form.errors else 200)


@require_POST
@staff_required(MANAGE)
def email_restore_default(request, notice):
    if notice not in email_templates.notices():
        raise Http404
    version = email_templates.save_version(notice, {}, comment=_("Back to the default"),
                                           user=request.user, use_default=True)
    messages.success(request, _("The default email is sent again (version %(number)s).")
                     % {"number": version.number})
    return redirect("staff:email_edit", notice=notice)
