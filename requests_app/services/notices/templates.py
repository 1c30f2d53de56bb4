"""Editable consumer emails.

Every notice in templates/emails/<notice>/ (subject.txt, body.txt, body.html) can
be edited by a Privacy Manager. An edit is a new EmailTemplateVersion: versions
are never changed in place, the newest one of a notice is the one sent, and a
version with `use_default` sends the files again. The outbox records the label of
the version each email was rendered from ("default" for the files, "v3").

Templates written in the staff area use a sandboxed subset of the Django template
language, checked node by node once parsed (sandbox.py): a short list of tags and
filters (no include, no debug, no extending other than emails/base.html), and
variables only from the notices' context, so an edit cannot read other templates
or anything else.
"""

import datetime
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.template import Context, TemplateSyntaxError, engines
from django.template.loader import get_template
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from requests_app.models import (
    Actor,
    EmailTemplateVersion,
    Identity,
    PrivacyRequest,
)
from requests_app.services.audit.events import record_event
from requests_app.services.notices import sandbox

PARTS = ("subject", "body_text", "body_html")
FILES = {"subject": "subject.txt", "body_text": "body.txt", "body_html": "body.html"}


def notice_context(request: PrivacyRequest, **extra) -> dict:
    by_letter = not request.identity.email  # a letter (outbox.queue_notice)
    return {
        "by_letter": by_letter,
        "code_valid_for": code_valid_for(by_letter),
        "request": request,
        "identity": request.identity,
        "status_url": f"{settings.SITE_URL}/status/?reference={request.reference}",
        "verify_url": f"{settings.SITE_URL}/verify/",
        "complaint_text": request.complaint_text,
        "after_appeal_text": request.after_appeal_text,
        "site_url": settings.SITE_URL,
        "download_days": settings.DOWNLOAD_LINK_DAYS,
        "download_max": settings.DOWNLOAD_MAX_COUNT,
        **extra,
    }


def code_valid_for(by_letter: bool) -> str:
    """How long a one-time code in the notice stays good, in words."""
    if by_letter:
        days = settings.LETTER_CODE_TTL_DAYS
        return ngettext("%(n)s day", "%(n)s days", days) % {"n": days}
    hours = settings.CODE_TTL_HOURS
    return ngettext("%(n)s hour", "%(n)s hours", hours) % {"n": hours}


def email_dir() -> Path:
    return Path(settings.BASE_DIR) / "templates" / "emails"


def notices() -> list[str]:
    """Every notice that has its three files, sorted: new notices appear by themselves."""
    return sorted(p.name for p in email_dir().iterdir()
                  if p.is_dir() and all((p / f).exists() for f in FILES.values()))


def current_version(notice: str) -> EmailTemplateVersion | None:
    return EmailTemplateVersion.objects.filter(notice=notice).order_by("-number").first()


def file_sources(notice: str) -> dict[str, str]:
    return {part: get_template(f"emails/{notice}/{name}").template.source
            for part, name in FILES.items()}


def current_sources(notice: str) -> dict[str, str]:
    version = current_version(notice)
    if version is None or version.use_default:
        return file_sources(notice)
    return {part: getattr(version, part) for part in PARTS}


def compile_parts(sources: dict[str, str]) -> dict:
    """The compiled templates, or a ValidationError naming the part and the problem."""
    labels = {"subject": _("Subject"), "body_text": _("Text"), "body_html": _("HTML")}
    compiled = {}
    for part in PARTS:
        source = sources.get(part) or ""
        if not source.strip():
            raise ValidationError(_("%(part)s cannot be empty.") % {"part": labels[part]})
        try:
            compiled[part] = engines["django"].from_string(source)
        except TemplateSyntaxError as exc:
            raise ValidationError(_("%(part)s: %(error)s") % {"part": labels[part],
                                                               "error": exc}) from None
        sandbox.check(compiled[part].template.nodelist, labels[part])
    return compiled


def render_version(version: EmailTemplateVersion, context: dict) -> tuple[str, str, str]:
    return render_sources({part: getattr(version, part) for part in PARTS}, context)


def render_sources(sources: dict[str, str], context: dict) -> tuple[str, str, str]:
    compiled = compile_parts(sources)
    subject, text, html = (compiled[part].render(context) for part in PARTS)
    return " ".join(subject.split()), text, html


def save_version(notice: str, sources: dict[str, str], *, comment: str, user,
                 use_default: bool = False) -> EmailTemplateVersion:
    """A new version of the notice (never an edit of an old one), audited."""
    if notice not in notices():
        raise ValidationError(_("There is no email called “%(notice)s”.") % {"notice": notice})
    if not use_default:
        compile_parts(sources)
        sample_render(sources)  # a template that fails on a real request never goes live
    for _attempt in range(3):
        try:
            with transaction.atomic():
                number = (EmailTemplateVersion.objects.filter(notice=notice)
                          .aggregate(n=Max("number"))["n"] or 0) + 1
                version = EmailTemplateVersion.objects.create(
                    notice=notice, number=number, use_default=use_default,
                    comment=comment.strip()[:200], created_by=user,
                    **({} if use_default else {part: sources[part] for part in PARTS}))
                record_event("config.email_template.changed", actor=Actor.staff(user),
                             data={"notice": notice, "version": version.label,
                                   "number": number})
            return version
        except IntegrityError:  # two managers saved at once: take the next number
            continue
    raise ValidationError(_("The email could not be saved; try again."))


def sample_request() -> PrivacyRequest:
    """An unsaved request with every field a notice may show, for previews."""
    now = timezone.now()
    request = PrivacyRequest(
        reference="PP-SAMP-LE00-0000-0000", request_type="access", jurisdiction="CA",
        channel="web", received_at=now, denial_reason="exemption",
        denial_detail=_("(the denial detail written by staff)"),
        extension_notice=_("(the reason for the extension written by staff)"),
        information_request=_("(the message asking for more information)"),
        appeal_text=_("(the consumer's appeal)"),
        appeal_decision=_("(the reasons for the appeal decision)"),
        responded_at=now, information_requested_at=now,
    )
    request.set_deadlines()
    request.extended_due_on = request.due_on + datetime.timedelta(days=45)
    request.appeal_due_on = request.due_on
    identity = Identity(name="Pat Example", email="pat@example.com")
    identity.request = request  # also caches request.identity
    return request


def sample_render(sources: dict[str, str]) -> tuple[str, str, str]:
    request = sample_request()
    extra = {"code": "123456", "download_url": f"{settings.SITE_URL}/download/sample/",
             "expires_at": timezone.now() + datetime.timedelta(days=7)}
    try:
        return render_sources(sources, Context(notice_context(request, **extra)).flatten())
    except ValidationError:
        raise
    except Exception as exc:  # noqa: BLE001 - a template error is the editor's to fix
        raise ValidationError(_("The email cannot be rendered: %(error)s")
                              % {"error": exc}) from None
