import pytest
from django.contrib.auth.models import User

from requests_app.models import AuditEvent
from tests.conftest import file_request, staff_login

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser_client(client):
    user = User.objects.create_superuser("root", "root@staff.example", "x" * 16)
    staff_login(client, user)
    return client


def test_requests_and_audit_events_are_listed(superuser_client):
    request = file_request()
    assert request.reference in superuser_client.get(
        "/admin/requests_app/privacyrequest/").content.decode()
    assert superuser_client.get("/admin/requests_app/auditevent/").status_code == 200


def test_audit_events_are_read_only_in_the_admin(superuser_client):
    file_request()
    event = AuditEvent.objects.first()
    url = f"/admin/requests_app/auditevent/{event.pk}/"
    page = superuser_client.get(url + "change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert superuser_client.post(url + "change/", {"reason": "rewritten"}).status_code == 403
    assert superuser_client.post(url + "delete/", {"post": "yes"}).status_code == 403
    assert superuser_client.get("/admin/requests_app/auditevent/add/").status_code == 403
    assert AuditEvent.objects.get(pk=event.pk).reason == ""


def test_requests_cannot_be_edited_in_the_admin(superuser_client):
    request = file_request()
    url = f"/admin/requests_app/privacyrequest/{request.pk}/change/"
    assert superuser_client.post(url, {"due_on": "2030-01-01"}).status_code == 403
