"""The role matrix: every role against every staff page and every transition.

Roles: Privacy Manager (alice), Privacy Analyst (bob), Auditor (charlie), Source
Owner (dave), and, for contrast, a staff login without a verified TOTP code and
no login at all. The pages are every URL of /staff/, /audit/ and /admin/ as the
URL resolver lists them, opened (or posted, as their forms post) by each role; the
transitions are every transition of the state machine, posted through the desk
exactly as its forms post them. A new URL or transition fails the coverage tests
until it is placed in the tables here.
"""

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import URLResolver, get_resolver
from django.utils import timezone

from requests_app.files import open_text_writer
from requests_app.models import (
    GuardianDetails,
    Actor,
    AuditEvent,
    DataSource,
    Disclosure,
    OutgoingEmail,
    Package,
    PrivacyRequest,
    Purpose,
    PurposeNotice,
    SourceRun,
    State,
    ThirdParty,
    ThirdPartyNotice,
    VerificationEvidence,
)
from requests_app.models.privacy_request import ActorKind
from requests_app.services.requests.lifecycle import available_transitions
from tests.conftest import committed, file_request, staff_login, totp_device

pytestmark = pytest.mark.django_db

ROLES = ["alice", "bob", "charlie", "dave"]
EVERYONE = set(ROLES)

# Every named URL under /staff/ and /audit/ -> (method, roles that may use it).
# Everyone else gets a 403. The list is checked against the URL resolver, so a new
# page fails test_the_page_matrix_covers_every_staff_url until it is added here.
PAGES = {
    "staff:dashboard": ("GET", {"alice", "bob"}),
    "staff:queue": ("GET", {"alice", "bob"}),
    "staff:assign": ("POST", {"alice"}),
    "staff:intake": ("GET", {"alice", "bob"}),
    "staff:emails": ("GET", {"alice"}),
    "staff:email_edit": ("GET", {"alice"}),
    "staff:email_restore_default": ("POST", {"alice"}),
    "staff:tasks": ("GET", EVERYONE),  # each sees the tasks of their own sources
    "staff:settings": ("GET", EVERYONE),  # each their own email settings
    "staff:task": ("GET", {"alice", "dave"}),  # dave owns the source; alice manages sources
    "staff:violations": ("GET", {"alice", "bob"}),
    "staff:desk": ("GET", {"alice", "bob"}),
    "staff:progress": ("GET", {"alice", "bob"}),
    "staff:claim": ("POST", {"alice", "bob"}),
    "staff:add_note": ("POST", {"alice", "bob"}),
    "staff:widen_period": ("POST", {"alice", "bob"}),  # a Right to Know period
    "staff:notice_answer": ("POST", {"alice", "bob"}),
    "staff:original": ("GET", {"alice", "bob"}),
    "staff:permission": ("GET", {"alice", "bob"}),  # an agent's signed permission
    # Evidence of a verification by hand, a parent's or guardian's proof.
    "staff:verification_file": ("GET", {"alice", "bob"}),
    "staff:package_preview": ("GET", {"alice", "bob"}),
    "staff:retry_source": ("POST", {"alice"}),  # a Privacy Manager's
    # Requesters with no email address: letters hold the person's address, so an
    # auditor sees the audit events of them, not the letters.
    "staff:letters": ("GET", {"alice", "bob"}),
    "staff:letter_pdf": ("GET", {"alice", "bob"}),
    "staff:letter_posted": ("POST", {"alice", "bob"}),
    "staff:add_email": ("POST", {"alice", "bob"}),
    "staff:package_sent": ("POST", {"alice", "bob"}),
    "audit:home": ("GET", {"alice", "charlie"}),
    "audit:requests": ("GET", {"alice", "charlie"}),
    "audit:events": ("GET", {"alice", "charlie"}),
    "audit:metrics": ("GET", {"alice", "charlie"}),
    "audit:opt_outs": ("GET", {"alice", "charlie"}),
}
# Pages opened with GET whose form also posts: an empty form from a role that may
# gets an answer (the form again, with what is missing), from any other a 403.
ALSO_POSTED = {"staff:intake", "staff:email_edit", "staff:task"}
# Pages with their own answer for every logged-in role.
OPEN_PAGES = {
    "staff:login": ("GET", 302),   # already logged in: on to the landing page
    "staff:logout": ("POST", 302),
}
# The steps are posted by the transition matrix below.
STEP_URL = "staff:step"
# Pages showing a person's data: opening one writes an audit event.
PERSONAL = {"staff:desk", "staff:original", "staff:permission", "staff:verification_file",
            "staff:task", "staff:package_preview", "staff:letter_pdf",
            "admin:requests_app_privacyrequest_change"}
POST_DATA = {"text": "Called the customer back.", "assignee": "alice",
             "reason": "The appeal asked for 2021 too."}
# What opening a page of PERSONAL writes in the trail.
SEEN = ["staff.viewed_identity", "package.previewed", "letter.opened"]

# The Django admin is for Privacy Managers (sources, third parties, purposes): every
# other role gets a 403 on every admin URL. What a manager may do there, by model:
ADMIN_VIEW = {"privacyrequest", "auditevent", "datasource", "thirdparty", "purpose",
              "consentrecord", "disclosure"}
ADMIN_ADD = {"datasource", "thirdparty", "purpose"}
ADMIN_SITE = {
    "admin:index": 200,
    "admin:login": 302,            # already logged in: on to the index
    "admin:logout": 405,           # POST only
    "admin:password_change": 200,
    "admin:password_change_done": 200,
    "admin:jsi18n": 200,
    "admin:autocomplete": 403,     # no autocomplete field anywhere
    "admin:view_on_site": 404,     # no model has a public page
    "admin:app_list": 200,         # /admin/requests_app/
    "admin:catch_all": 404,
    "admin:otp_totp_totpdevice_config": 403,
    "admin:otp_totp_totpdevice_qrcode": 403,
    "admin:auth_user_password_change": 403,
}


def _walk(patterns, prefix="", namespace=None):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern),
                             pattern.namespace or namespace)
        else:
            yield namespace, pattern.name, prefix + str(pattern.pattern)


def staff_routes() -> dict[str, str]:
    """Every URL under /staff/, /audit/ and /admin/, from the URL resolver, by name
    (an unnamed admin URL by what it does)."""
    routes = {}
    for namespace, name, route in _walk(get_resolver().url_patterns):
        if namespace not in ("staff", "audit", "admin"):
            continue
        if name is None:  # the admin's /<model>/<id>/ (redirects to change) and catch-all
            name = "catch_all" if "(?P<url>" in route else "object_" + route.split("/")[2]
        routes[f"{namespace}:{name}"] = route
    return routes


def admin_expected(name: str) -> int:
    """The status a Privacy Manager gets on an admin URL (derived from the hand
    lists above, so a permission moved by mistake fails)."""
    if name in ADMIN_SITE:
        return ADMIN_SITE[name]
    short = name.split(":", 1)[1]
    if short.startswith("object_"):
        return 302  # /admin/<model>/<id>/ redirects to .../change/, checked on its own
    app_model, _, view = short.rpartition("_")
    app, _, model = app_model.partition("_") if not app_model.startswith("otp_totp") else (
        "otp_totp", "", app_model.removeprefix("otp_totp_"))
    if app_model.startswith("requests_app_"):
        model = app_model.removeprefix("requests_app_")
    if not app_model.startswith("requests_app_") or model not in ADMIN_VIEW:
        return 403
    if view == "add":
        return 200 if model in ADMIN_ADD else 403
    if view == "delete":
        return 403  # nothing is deleted in the admin: disable or make inactive
    return 200  # changelist, change, history


def test_the_page_matrix_covers_every_staff_url():
    routes = staff_routes()
    staff_and_audit = {n for n in routes if not n.startswith("admin:")}
    assert staff_and_audit == set(PAGES) | set(OPEN_PAGES) | {STEP_URL}
    admin = {n for n in routes if n.startswith("admin:")}
    assert set(ADMIN_SITE) <= admin  # no stale entries
    assert len(admin) > 60  # every registered model's pages are in the walk


@pytest.fixture
def people(alice, bob, charlie, dave):
    return {"alice": alice, "bob": bob, "charlie": charlie, "dave": dave}


@pytest.fixture
def world(alice, bob, dave, settings, tmp_path):
    """One of everything a staff URL can point at: a request entered by post with its
    original, a package, a manual source owned by dave with a waiting task."""
    from django.test import Client

    settings.MEDIA_ROOT = tmp_path
    clerk = staff_login(Client(), bob)
    with committed():
        clerk.post("/staff/intake/", {
            "channel": "post", "received_at": timezone.localtime().strftime("%Y-%m-%dT%H:%M"),
            "request_type": "access", "jurisdiction": "VA", "filed_by": "self",
            "name": "Lee Letter", "email": "lee@example.com", "postal_address": "1 Main St",
            "original": SimpleUploadedFile("letter.pdf", b"%PDF-1.4 the letter")})
    request = PrivacyRequest.objects.get(identity__email="lee@example.com")
    path = f"packages/{request.reference}.zip"
    (tmp_path / "packages").mkdir()
    with open_text_writer(tmp_path / path) as out:
        out.write("the package")
    Package.objects.create(request=request, kind="access", filename="package.zip", path=path,
                           content_type="application/zip", sha256="0" * 64)
    # As if an agent had filed it on the portal with a signed permission.
    permission = f"permissions/{request.reference}.pdf"
    (tmp_path / "permissions").mkdir()
    with open_text_writer(tmp_path / permission) as out:
        out.write("%PDF-1.4 signed permission")
    VerificationEvidence.objects.create(request=request, submission="s1",
                                        permission_path=permission,
                                        permission_name="permission.pdf",
                                        permission_type="application/pdf")
    # As if a parent had filed it, with their proof.
    proof = f"verification/{request.reference}/guardian.enc"
    with open_text_writer(tmp_path / proof) as out:
        out.write("%PDF-1.4 birth certificate")
    GuardianDetails.objects.create(request=request, child_name="Sam Letter",
                                   proof_path=proof, proof_type="application/pdf")
    source = DataSource.objects.create(name="Paper archive", kind="manual", owner=dave,
                                       categories=["user.contact.address"])
    run = SourceRun.objects.create(request=request, source=source, action="gather",
                                   state=SourceRun.State.WAITING)
    objects = {"request": request, "run": run, "source": source,
               **admin_objects(request, source)}
    objects["notice"] = ThirdPartyNotice.objects.create(
        request=request, third_party_id=objects["thirdparty"]).pk
    # A letter to post, as if the request had come with no email address.
    objects["letter"] = OutgoingEmail.objects.create(
        request=request, notice="received", channel="letter", address="Lee Letter\n1 Main St",
        subject="We received your request", body_text="Hello", body_html="<p>Hello</p>").pk
    return objects


def admin_objects(request, source) -> dict:
    """One row of every model the admin lists, for its change and history pages."""
    from axes.models import AccessAttempt, AccessFailureLog, AccessLog

    from requests_app.services.consent import ledger as consent

    seen = {"user_agent": "test", "ip_address": "127.0.0.1", "username": "nobody",
            "http_accept": "*/*", "path_info": "/staff/login/"}
    purpose = Purpose.objects.create(slug="partners", name="Partners", basis="opt_out",
                                     opt_out_type="opt_out_sale")
    notice = PurposeNotice.objects.create(purpose=purpose, version=1, text="We share.")
    with committed():
        record = consent.record(consent.person("lee@example.com"), purpose, "withdraw",
                                method="preference_page", notice=notice,
                                actor=Actor.consumer())
    partner = ThirdParty.objects.create(name="Northwind", kind="third_party")
    disclosure = Disclosure.objects.create(
        source=source, table="shares", row_key="1", subject=record.subject,
        third_party=partner, third_party_name="Northwind", disclosed_at=timezone.now())
    return {
        "purpose": purpose.pk, "consentrecord": record.pk, "thirdparty": partner.pk,
        "disclosure": disclosure.pk, "group": Group.objects.get(name="Auditor").pk,
        "accessattempt": AccessAttempt.objects.create(**seen, get_data="", post_data="",
                                                      failures_since_start=1).pk,
        "accesslog": AccessLog.objects.create(**seen).pk,
        "accessfailurelog": AccessFailureLog.objects.create(**seen).pk,
    }


def fill(route: str, world, alice) -> str:
    """A URL from its route, with the world's objects in its arguments."""
    from django.contrib.contenttypes.models import ContentType

    route = route.split("(?P<url>")[0] + ("no-such-page/" if "(?P<url>" in route else "")
    route = route.replace("^(?P<app_label>auth|otp_totp|axes|requests_app)/$",
                          "requests_app/")
    model = route.split("/")[2] if route.startswith("admin/") and route.count("/") > 3 else ""
    objects = {
        **world,
        "privacyrequest": world["request"].pk, "datasource": world["source"].pk,
        "sourcerun": world["run"].pk, "user": alice.pk, "group": 1,
        "totpdevice": totp_device(alice).pk,
        "auditevent": AuditEvent.objects.filter(request=world["request"]).first().pk,
    }
    object_id = objects.get(model, 999999)
    values = {
        "<str:reference>": world["request"].reference, "<str:token>": world["run"].token,
        "<slug:notice>": "denied", "<str:kind>": "access", "<int:year>": "2026",
        "<slug:kind>": "guardian-proof",
        "<path:object_id>": object_id, "<int:pk>": object_id, "<id>": object_id,
        "<int:notice_id>": world["notice"], "<int:run_id>": world["run"].pk,
        "<int:letter_id>": world["letter"],
        "<path:content_type_id>": ContentType.objects.get_for_model(PrivacyRequest).pk,
    }
    for key, value in values.items():
        route = route.replace(key, str(value))
    if route in ("audit/requests/", "audit/events/"):
        route += "?format=csv"
    return "/" + route


@pytest.mark.parametrize("role", ROLES)
def test_each_role_uses_only_its_pages(role, people, world, client):
    """Every staff, audit and admin URL, opened (or posted, as its form posts it) by
    each role; the pages showing a person's data write an audit event when opened."""
    user = people[role]
    wrong = []
    for name, route in sorted(staff_routes().items()):
        if name == STEP_URL:
            continue
        if name in OPEN_PAGES:
            method, expected = OPEN_PAGES[name]
        elif name in PAGES:
            method, roles = PAGES[name]
            expected = (200 if method == "GET" else 302) if role in roles else 403
        else:
            method = "GET"
            expected = admin_expected(name) if role == "alice" else 403
        url = fill(route, world, people["alice"])
        staff_login(client, user)
        seen = AuditEvent.objects.filter(actor=user, request=world["request"],
                                         action__in=SEEN).count()
        data = {**POST_DATA, "ids": [world["request"].pk], "assignee": people["alice"].pk}
        response = client.get(url) if method == "GET" else client.post(url, data)
        if response.status_code != expected:
            wrong.append((name, url, response.status_code, expected))
        if name in PERSONAL and response.status_code == 200:
            after = AuditEvent.objects.filter(actor=user, request=world["request"],
                                              action__in=SEEN).count()
            if after != seen + 1:
                wrong.append((name, url, "not audited"))
        if name in ALSO_POSTED:
            posted = client.post(url, {}).status_code
            if (posted == 403) == (role in PAGES[name][1]):
                wrong.append((name, url, "POST", posted))
    assert not wrong, "\n".join(map(str, wrong))


@pytest.mark.parametrize("name", sorted(PAGES) + ["admin:index"])
def test_every_staff_page_needs_a_login_verified_by_a_code(name, alice, client, world):
    target = fill(staff_routes()[name], world, alice)
    response = client.get(target)
    assert response.status_code == 302 and response["Location"].startswith("/staff/login/")
    client.force_login(alice)  # password only: no TOTP code given
    response = client.get(target)
    assert response.status_code == 302 and response["Location"].startswith("/staff/login/")


def test_the_django_admin_needs_a_verified_session_too(client):
    from django.contrib.auth.models import User

    root = User.objects.create_superuser("root", "root@staff.example", "x" * 16)
    client.force_login(root)
    assert client.get("/admin/login/").status_code == 302
    staff_login(client, root)
    assert client.get("/admin/").status_code == 200


# Which role may take which staff step (from the roles' permissions, written here
# by hand so that a permission moved by mistake fails).
MANAGER_ONLY = {"approve_erasure", "reject_erasure_plan", "release", "deny", "extend",
                "grant_appeal", "deny_appeal"}
ANALYST_TOO = {"verify_manually", "verify_for_categories", "start_review", "approve", "retry_fulfilment", "close", "cancel",
               "appeal", "request_information", "merge"}
# Steps only the system takes (or the consumer): refused to every staff role.
NOT_STAFF = {"verify", "approve_opt_out", "confirm_opt_out", "expire", "flag_for_attention",
             "mark_results_ready", "resume_fulfilment", "start_fulfilment",
             "wait_on_manual_source", "close_quietly"}
# Every transition of the machine (read from it: a new one fails the test below
# until it is placed in one of the three lists).
TRANSITIONS = {t.name: t for t in PrivacyRequest(state=State.PENDING_VERIFICATION)
               .get_all_state_transitions()}
ALL_STEPS = sorted(TRANSITIONS)


def test_the_matrix_covers_every_transition_of_the_machine():
    assert set(ALL_STEPS) == MANAGER_ONLY | ANALYST_TOO | NOT_STAFF
    assert not (MANAGER_ONLY & ANALYST_TOO) and not (NOT_STAFF & (MANAGER_ONLY | ANALYST_TOO))
    staff_steps = {n for n, t in TRANSITIONS.items() if ActorKind.STAFF in t.custom["actors"]}
    assert staff_steps == MANAGER_ONLY | ANALYST_TOO


def _request_for(name, days_ago, expected_sources):
    state = min(expected_sources[name])
    # A copy of specific pieces needs a signed declaration too: the matrix verifies a
    # request for categories by hand (test_manual_verification.py covers the rest).
    kind = ("deletion" if "erasure" in name
            else "know_categories" if name == "verify_manually" else "access")
    if name == "merge":
        file_request(request_type=kind, received_at=days_ago(41))
    return file_request(request_type=kind, jurisdiction="VA", state=state,
                        received_at=days_ago(40))


@pytest.mark.parametrize("name", ALL_STEPS)
@pytest.mark.parametrize("role", ROLES)
def test_each_role_takes_only_its_steps(
        role, name, people, client, days_ago, transition_inputs, expected_sources):
    request = _request_for(name, days_ago, expected_sources)
    user = people[role]
    staff_login(client, user)
    may = name not in NOT_STAFF and (
        role == "alice" or (role == "bob" and name in ANALYST_TOO))
    # The desk offers exactly the steps the role may take.
    assert (name in available_transitions(request, Actor.staff(user))) == may
    form = {f"{name}-{k}": v for k, v in transition_inputs.get(name, {}).items()}
    form.update({f"{name}-expected_state": request.state, f"{name}-version": request.version})
    state_before, version_before = request.state, request.version
    response = client.post(f"/staff/requests/{request.reference}/step/{name}/", form)
    request.refresh_from_db()
    if may:
        assert response.status_code == 302, response.content.decode()[:2000]
        assert request.state == (TRANSITIONS[name].target or state_before)
    else:
        assert response.status_code == 403
        assert (request.state, request.version) == (state_before, version_before)


def test_a_source_owner_sees_only_the_tasks_of_their_sources(dave, bob, world, client):
    assert not Group.objects.get(name="Source Owner").permissions.exists()
    other = DataSource.objects.create(name="Branch files", kind="manual", owner=bob)
    elsewhere = file_request(email="sam@example.com")
    theirs = SourceRun.objects.create(request=elsewhere, source=other, action="gather",
                                      state=SourceRun.State.WAITING)
    staff_login(client, dave)
    page = client.get("/staff/tasks/").content.decode()
    assert world["run"].token in page and theirs.token not in page
    assert elsewhere.reference not in page
    assert client.get(f"/staff/tasks/{theirs.token}/").status_code == 403
    assert client.get("/staff/queue/").status_code == 403
    assert client.get("/audit/").status_code == 403


def test_an_analyst_is_not_offered_a_denial(bob, client):
    request = file_request(state=State.IN_REVIEW)
    staff_login(client, bob)
    page = client.get(f"/staff/requests/{request.reference}/").content.decode()
    assert 'data-step="approve"' in page and 'data-step="deny"' not in page
