import pytest

from requests_app.models import AuditEvent
from requests_app.models.audit import AppendOnlyError
from tests.conftest import file_request

pytestmark = pytest.mark.django_db


def test_audit_events_cannot_be_changed_or_deleted():
    file_request()
    event = AuditEvent.objects.first()
    event.reason = "rewritten"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.update(reason="rewritten")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.get(pk=event.pk).reason == ""
