"""The role matrix: every role against every staff page and every transition.

Roles: Privacy Manager (alice), Privacy Analyst (bob), Auditor (charlie), Source
Owner (dave), and, for contrast, a staff login without a verified TOTP code and
no login at all. Pages are opened with GET; transitions are posted through the
desk exactly as its forms post them.
"""

import pytest
from django.contrib.auth.models import Group

from requests_app.models import Actor, PrivacyRequest, State
from requests_app.services.lifecycle import available_transitions
from tests.conftest import file_request, staff_login
from tests.test_lifecycle import EXPECTED_SOURCES, INPUTS, TRANSITIONS

pytestmark = pytest.mark.django_db

ROLES = ["alice", "bob", "charlie", "dave"]

# page -> roles that may open it (everyone else: 403, or the login page)
PAGES = {
    "/staff/": {"alice", "bob"},
    "/staff/queue/": {"alice", "bob"},
    "/staff/queue/?mine=1": {"alice", "bob"},
    "/staff/intake/": {"alice", "bob"},
    "/staff/requests/{ref}/": {"alice", "bob"},
    "/staff/requests/{ref}/progress/": {"alice", "bob"},
    "/staff/emails/": {"alice"},
    "/staff/emails/denied/": {"alice"},
    "/staff/tasks/": {"alice", "bob", "charlie", "dave"},
    "/audit/": {"alice", "charlie"},
    "/audit/metrics/2026/": {"alice", "charlie"},
    "/audit/opt-outs/2026/": {"alice", "charlie"},
    "/staff/consent/violations/": {"alice", "bob"},
}
POSTS = {
    # url -> roles that may post it
    "/staff/requests/{ref}/claim/": {"alice", "bob"},
    "/staff/requests/{ref}/notes/": {"alice", "bob"},
    "/staff/queue/assign/": {"alice"},
    "/staff/emails/denied/default/": {"alice"},
}

# Which role may take which staff step (from the roles' permissions, written here
# by hand so that a permission moved by mistake fails).
MANAGER_ONLY = {"approve_erasure", "reject_erasure_plan", "release", "deny", "extend",
                "grant_appeal", "deny_appeal"}
ANALYST_TOO = {"verify", "start_review", "approve", "retry_fulfilment", "close", "cancel",
               "appeal", "request_information", "merge"}


@pytest.fixture
def people(alice, bob, charlie, dave):
    return {"alice": alice, "bob": bob, "charlie": charlie, "dave": dave}


@pytest.mark.parametrize("url", sorted(PAGES))
@pytest.mark.parametrize("role", ROLES)
def test_each_role_opens_only_its_pages(role, url, people, client):
    request = file_request()
    staff_login(client, people[role])
    response = client.get(url.format(ref=request.reference))
    expected = 200 if role in PAGES[url] else 403
    assert response.status_code == expected, (role, url)


@pytest.mark.parametrize("url", sorted(POSTS))
@pytest.mark.parametrize("role", ROLES)
def test_each_role_posts_only_what_it_may(role, url, people, client):
    request = file_request()
    staff_login(client, people[role])
    response = client.post(url.format(ref=request.reference),
                           {"ids": [request.pk], "assignee": str(people["alice"].pk),
                            "text": "Called the customer back."})
    allowed = role in POSTS[url]
    assert (response.status_code == 302) == allowed, (role, url, response.status_code)
    if not allowed:
        assert response.status_code == 403


@pytest.mark.parametrize("url", sorted(PAGES) + ["/admin/"])
def test_every_staff_page_needs_a_login_verified_by_a_code(url, alice, client):
    request = file_request()
    target = url.format(ref=request.reference)
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


STAFF_STEPS = sorted(name for name, t in TRANSITIONS.items() if "staff" in t.custom["actors"])


def test_the_matrix_covers_every_staff_step():
    assert set(STAFF_STEPS) == MANAGER_ONLY | ANALYST_TOO


def _request_for(name, days_ago):
    state = min(EXPECTED_SOURCES[name])
    kind = "deletion" if "erasure" in name else "access"
    if name == "merge":
        file_request(request_type=kind, received_at=days_ago(41))
    return file_request(request_type=kind, jurisdiction="VA", state=state,
                        received_at=days_ago(40))


@pytest.mark.parametrize("name", STAFF_STEPS)
@pytest.mark.parametrize("role", ROLES)
def test_each_role_takes_only_its_steps(role, name, people, client, days_ago):
    request = _request_for(name, days_ago)
    user = people[role]
    staff_login(client, user)
    may = role == "alice" or (role == "bob" and name in ANALYST_TOO)
    # The desk offers exactly the steps the role may take.
    assert (name in available_transitions(request, Actor.staff(user))) == may
    form = {f"{name}-{k}": v for k, v in INPUTS.get(name, {}).items()}
    form.update({f"{name}-expected_state": request.state, f"{name}-version": request.version})
    state_before = request.state
    response = client.post(f"/staff/requests/{request.reference}/step/{name}/", form)
    request.refresh_from_db()
    if may:
        assert response.status_code == 302, response.content.decode()[:2000]
        assert request.state == (TRANSITIONS[name].target or state_before)
    else:
        assert response.status_code == 403
        assert request.state == state_before and request.updated_at == PrivacyRequest.objects.get(
            pk=request.pk).updated_at


def test_a_source_owner_sees_only_the_tasks_of_their_sources(dave, client):
    assert not Group.objects.get(name="Source Owner").permissions.exists()
    staff_login(client, dave)
    assert client.get("/staff/tasks/").status_code == 200
    assert client.get("/staff/queue/").status_code == 403
    assert client.get("/audit/").status_code == 403


def test_an_analyst_is_not_offered_a_denial(bob, client):
    request = file_request(state=State.IN_REVIEW)
    staff_login(client, bob)
    page = client.get(f"/staff/requests/{request.reference}/").content.decode()
    assert 'data-step="approve"' in page and 'data-step="deny"' not in page
