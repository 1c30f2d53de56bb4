"""The consumer's preference page: each purpose, what it means, the current
choice, one click to change it, and "withdraw from everything" in one step.

Reached through a signed link in a marketing email (links.py) or by the address
plus a one-time code sent to it. Nothing more is asked for an opt-out."""


from django import forms
from django.contrib import messages
from django.http import HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from requests_app import ratelimit
from requests_app.models import Actor, ConsentRecord, Purpose, PurposeNotice
from requests_app.models.privacy_request import TransitionInputError
from requests_app.preferences import links
from requests_app.preferences.session import (
    SESSION_EMAIL,
    SESSION_METHOD,
    SESSION_SINCE,
    open_session,
    session_email,
)
from requests_app.services.consent import ledger as consent
from requests_app.services.preferences import choices

@never_cache
def follow_link(request, token: str):
    """A signed link from an email: opens the page for that address."""
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    try:
        email = links.read_token(token)
    except links.LinkExpired:
        return render(request, "preferences/link_refused.html", {"expired": True}, status=410)
    except links.LinkInvalid:
        return render(request, "preferences/link_refused.html", {"expired": False}, status=400)
    open_session(request, email, ConsentRecord.Method.EMAIL_LINK)
    return redirect("preferences:manage")


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def manage(request):
    email = session_email(request)
    if email is None:
        return redirect("preferences:start")
    method = request.session.get(SESSION_METHOD, ConsentRecord.Method.PREFERENCE_PAGE)
    if request.method == "POST":
        # A withdrawal files an opt-out request: an acknowledgment email, and a
        # notice to each source and third party the purpose governs.
        if ratelimit.exceeded(request, "form", email=email):
            return ratelimit.too_many(request)
        try:
            _apply_choice(request, email, method)
        except TransitionInputError as exc:
            messages.error(request, exc.messages[0])
        return redirect("preferences:manage")
    from requests_app.preferences.middleware import honour_for_person

    honour_for_person(request)  # a Global Privacy Control signal first: the page shows it
    rows = consent.choices(consent.person(email))
    return render(request, "preferences/manage.html", {
        "choices": [c for c in rows if c.notice is not None],
        "anything_to_withdraw": any(c.notice and not c.withdrawn for c in rows),
    })


def _apply_choice(request, email: str, method: str) -> None:
    actor = Actor.consumer()
    if "everything" in request.POST:
        filed = choices.withdraw_everything(email, method=method, actor=actor)
        messages.success(request, _("Done: you have withdrawn from everything listed below.")
                         + _done_by(filed))
        return
    purpose = Purpose.objects.filter(active=True, slug=request.POST.get("purpose", "")).first()
    action = request.POST.get("choice", "")
    if purpose is None or action not in ConsentRecord.Action.values:
        raise TransitionInputError(_("Choose one of the purposes listed, and yes or no."))
    notice = PurposeNotice.objects.filter(purpose=purpose,
                                          pk=_int(request.POST.get("notice"))).first()
    if notice is None:
        raise TransitionInputError(_("The page was out of date: read the notice again and "
                                     "choose."))
    act = ""
    if action == ConsentRecord.Action.GRANT:
        act = _("Pressed “Yes, I agree” under version %(version)s of the notice on the "
                "preference page") % {"version": notice.version}
    entry, filed = choices.change(email, purpose, action, method=method, notice=notice,
                                  actor=actor, affirmative_act=act)
    if action == ConsentRecord.Action.GRANT:
        messages.success(request, _("Saved: you said yes to “%(purpose)s”.")
                         % {"purpose": purpose.name})
    else:
        messages.success(request, _("Saved: you said no to “%(purpose)s”.")
                         % {"purpose": purpose.name} + _done_by([filed] if filed else []))


def _done_by(filed) -> str:
    if not filed:
        return ""
    due = min(r.due_on for r in filed)
    refs = ", ".join(r.reference for r in filed)
    return " " + _("We are telling everyone who holds or received your information for "
                   "this, and it will be done by %(due)s at the latest (reference "
                   "%(refs)s).") % {"due": due.strftime("%B %-d, %Y"), "refs": refs}


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@csrf_exempt  # RFC 8058: mail providers post it with no cookie; the token is the proof
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe(request, token: str):
    """One-click unsubscribe from marketing (RFC 8058), for the List-Unsubscribe and
    List-Unsubscribe-Post headers of marketing emails: a POST withdraws every
    marketing purpose for the link's address; a GET asks first (mail scanners
    follow links)."""
    try:
        email = links.read_token(token, purpose=links.UNSUBSCRIBE)
    except links.LinkExpired:
        return render(request, "preferences/link_refused.html", {"expired": True}, status=410)
    except links.LinkInvalid:
        return render(request, "preferences/link_refused.html", {"expired": False}, status=400)
    marketing = list(Purpose.objects.filter(active=True, opt_out_type="opt_out_marketing"))
    done = None
    if request.method == "POST":
        done = choices.withdraw_purposes(email, marketing, method=ConsentRecord.Method.EMAIL_LINK,
                                         actor=Actor.consumer())
    return render(request, "preferences/unsubscribe.html", {
        "purposes": marketing, "done": done, "token": token,
        "due_note": _done_by(done) if done else ""})


@require_http_methods(["POST"])
def sign_out(request):
    for key in (SESSION_EMAIL, SESSION_METHOD, SESSION_SINCE):
        request.session.pop(key, None)
    return redirect(reverse("preferences:start"))


# --- by address and a one-time code --------------------------------------------------

SESSION_PENDING = "preferences_pending"


class EmailForm(forms.Form):
    email = forms.EmailField(label=_("Your email address"), max_length=254)
    # A field people never see: bots fill it in.
    website = forms.CharField(required=False, widget=forms.TextInput(
        attrs={"tabindex": "-1", "autocomplete": "off"}))


class CodeForm(forms.Form):
    code = forms.RegexField(label=_("The code from the email"), regex=r"^\s*\d{6,10}\s*$",
                            error_messages={"invalid": _("Enter the digits of the code.")})


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def start(request):
    if session_email(request):
        return redirect("preferences:manage")
    form = EmailForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if ratelimit.exceeded(request, "code", email=form.cleaned_data["email"]):
            return ratelimit.too_many(request)
        if not form.cleaned_data["website"]:
            from requests_app.preferences import codes

            email = form.cleaned_data["email"]
            codes.send_preferences_code(request, email)
            request.session[SESSION_PENDING] = email
        # The same answer whether or not we know the address.
        return redirect("preferences:code")
    return render(request, "preferences/start.html", {"form": form})


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def enter_code(request):
    email = request.session.get(SESSION_PENDING)
    if not email:
        return redirect("preferences:start")
    form = CodeForm(request.POST or None)
    if request.method == "POST" and ratelimit.exceeded(request, "code", email=email):
        return ratelimit.too_many(request)
    if request.method == "POST" and form.is_valid():
        from requests_app.preferences import codes

        problem = codes.check_preferences_code(request, email, form.cleaned_data["code"].strip())
        if problem is None:
            request.session.pop(SESSION_PENDING, None)
            open_session(request, email, ConsentRecord.Method.PREFERENCE_PAGE)
            return redirect("preferences:manage")
        form.add_error("code", problem)
    return render(request, "preferences/code.html", {"form": form})
