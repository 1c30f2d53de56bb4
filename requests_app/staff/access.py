"""Who may open the staff area, and how they log in.

Every page under /staff/, /audit/ and /admin/ needs a staff account whose session
was verified with a TOTP code (django-otp); the login asks for the password and
the code together. Failed logins count towards a lockout (django-axes), wrong
codes also slow the device down (django-otp's throttling), and a session ends
after STAFF_IDLE_MINUTES without a request. Views check their own permission on
top (`staff_required(perm)`): the middleware is the floor, not the whole rule.
The Django admin is the Privacy Manager's (and a superuser's) tool for sources,
third parties and purposes: other roles get a 403 there, whatever model
permissions they hold (their pages are /staff/ and /audit/, which audit what they
show).
"""

import math
import time
from functools import wraps

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import authenticate, logout
from django.contrib.auth.signals import user_login_failed
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.translation import gettext_lazy as _
from django_otp import verify_token
from django_otp.plugins.otp_totp.models import TOTPDevice

PROTECTED = ("/staff/", "/audit/", "/admin/")
OPEN = ("/staff/login/", "/staff/logout/")
LOGIN_URL = "/staff/login/"
_SEEN = "staff_seen"
ADMIN = "/admin/"
ADMIN_PERMISSION = "requests_app.manage_sources"


def _login_redirect(request):
    return redirect(f"{LOGIN_URL}?{urlencode({'next': request.get_full_path()})}")


class StaffAccessMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        path = request.path
        if path.startswith(PROTECTED) and not path.startswith(OPEN):
            user = request.user
            if not (user.is_authenticated and user.is_active and user.is_staff
                    and user.is_verified()):
                return _login_redirect(request)
            now = int(time.time())
            seen = request.session.get(_SEEN, now)
            if now - seen > settings.STAFF_IDLE_MINUTES * 60:
                logout(request)
                messages.info(request, _("Your session ended after a time without activity. "
                                         "Log in again."))
                return _login_redirect(request)
            # The desk's own polling of fulfilment progress is not activity.
            polling = request.headers.get("X-Requested-With") == "fetch"
            if (now - seen >= 60 and not polling) or _SEEN not in request.session:
                request.session[_SEEN] = now
            if path.startswith(ADMIN) and not (user.is_superuser
                                                or user.has_perm(ADMIN_PERMISSION)):
                raise PermissionDenied
        return self.get_response(request)


def staff_required(*perms):
    """A verified staff login holding every permission in `perms` (403 otherwise)."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            user = request.user
            if not (user.is_authenticated and user.is_staff and user.is_verified()):
                return _login_redirect(request)
            if perms and not user.has_perms(perms):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


class StaffLoginForm(forms.Form):
    username = forms.CharField(label=_("User name"), max_length=150,
                               widget=forms.TextInput(attrs={"autocomplete": "username",
                                                             "autofocus": True}))
    password = forms.CharField(label=_("Password"), strip=False,
                               widget=forms.PasswordInput(
                                   attrs={"autocomplete": "current-password"}))
    otp_token = forms.CharField(
        label=_("Code from your authenticator app"), max_length=8,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric",
                                      "pattern": "[0-9 ]*"}))

    # One message for a wrong user name, password or code: the form never tells
    # which of the three was wrong.
    WRONG = _("The user name, password or code is wrong. Check them and try again.")

    def __init__(self, request, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.request = request
        self.user = None

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        username, token = data["username"], data["otp_token"].replace(" ", "")
        # axes' backend counts a failure, refuses a locked-out pair, and raises
        # the lockout that its middleware turns into the lockout page.
        user = authenticate(self.request, username=username, password=data["password"])
        if user is None or not user.is_staff:
            raise forms.ValidationError(self.WRONG)
        device = TOTPDevice.objects.devices_for_user(user, confirmed=True).first()
        if device is None:
            self._failed(username)
            raise forms.ValidationError(_(
                "This account has no authenticator set up yet. Ask an administrator to "
                "run `manage.py staff_totp` for it."))
        allowed, extra = device.verify_is_allowed()
        if not allowed:
            self._failed(username)
            until = extra.get("locked_until")
            seconds = max(1, math.ceil((until - timezone.now()).total_seconds())) if until else 1
            raise forms.ValidationError(_(
                "Too many wrong codes: wait %(seconds)s seconds and try again.")
                % {"seconds": seconds})
        if verify_token(user, device.persistent_id, token) is None:
            self._failed(username)
            raise forms.ValidationError(self.WRONG)
        user.otp_device = device  # django_otp.login() puts it in the session
        self.user = user
        return data

    def _failed(self, username):
        """A right password with a wrong code is a failed login too (for axes)."""
        user_login_failed.send(sender=__name__, credentials={"username": username},
                               request=self.request)


def safe_next(request, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()},
                                                  require_https=request.is_secure()):
        return target
    return default


def landing_page(user) -> str:
    """Where a staff member starts: the dashboard, the auditor area, or their tasks."""
    if user.has_perm("requests_app.view_privacyrequest"):
        return "/staff/"
    if user.has_perm("requests_app.view_auditevent"):
        return "/audit/"
    return "/staff/tasks/"


def login_view(request):
    """Password and TOTP code on one page; then the page asked for, or the landing
    page of the user's role."""
    from django.contrib.auth import login
    from django.shortcuts import render

    from requests_app.models import Actor
    from requests_app.services.audit.events import record_event

    if (request.method == "GET" and request.user.is_authenticated and request.user.is_staff
            and request.user.is_verified()):
        return redirect(safe_next(request, landing_page(request.user)))
    form = StaffLoginForm(request, request.POST or None)
    if request.method == "POST" and form.is_valid():
        login(request, form.user)  # django-otp puts the verified device in the session
        request.session[_SEEN] = int(time.time())
        record_event("staff.logged_in", actor=Actor.staff(form.user))
        return redirect(safe_next(request, landing_page(form.user)))
    status = 400 if request.method == "POST" else 200
    return render(request, "staff/login.html",
                  {"form": form, "next": request.POST.get("next") or request.GET.get("next", "")},
                  status=status)
