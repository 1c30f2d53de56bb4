"""The application runs as a database role that does not own the tables
(docs/deployment.md): `grant_app_role` gives it SELECT and INSERT on the audit
trail and nothing more there, so it can write events but cannot UPDATE, DELETE,
TRUNCATE them, nor switch off or drop the triggers that guard them."""

import os
import subprocess
import sys

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection

from requests_app.models import Actor, AuditEvent
from requests_app.services.audit.events import record_event
from tests.conftest import ROOT

pytestmark = pytest.mark.django_db(transaction=True)

TABLE = "requests_app_auditevent"


@pytest.fixture
def app_role():
    """A login role of the application's kind, granted by the command, dropped after."""
    role = f"pp_app_{os.getpid()}"
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        call_command("grant_app_role", role)
        s = connection.settings_dict
        yield f"postgres://{role}@{s['HOST']}:{s['PORT']}/{s['NAME']}"
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP OWNED BY "{role}"')
            cursor.execute(f'DROP ROLE "{role}"')


def manage(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, timeout=120,
                          env={**os.environ, "DATABASE_URL": url},
                          capture_output=True, text=True)


def test_the_application_role_writes_events_but_cannot_remove_edit_or_unguard_them(app_role):
    record_event("test.before", actor=Actor.system())
    # The application, connected as that role, appends to the chain and verifies it.
    wrote = manage(app_role, "shell", "-c",
                   "from requests_app.models import Actor\n"
                   "from requests_app.services.audit.events import record_event\n"
                   "record_event('test.as_app_role', actor=Actor.system())")
    assert wrote.returncode == 0, wrote.stderr
    verified = manage(app_role, "verify_audit_log")
    assert verified.returncode == 0 and "intact" in verified.stdout, verified.stderr
    assert AuditEvent.objects.filter(action="test.as_app_role").exists()

    refused = []
    with psycopg.connect(app_role, autocommit=True) as conn:
        for sql in (f"TRUNCATE {TABLE} CASCADE", f"DELETE FROM {TABLE}",
                    f"UPDATE {TABLE} SET reason = 'x'",
                    f"ALTER TABLE {TABLE} DISABLE TRIGGER USER",
                    f"ALTER TABLE {TABLE} DISABLE TRIGGER requests_app_audit_append_only",
                    f"DROP TRIGGER requests_app_auditevent_no_truncate ON {TABLE}",
                    f"ALTER TABLE {TABLE} OWNER TO CURRENT_USER"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)
            refused.append(sql)
        # Ordinary tables stay writable for it.
        conn.execute("UPDATE requests_app_privacyrequest SET state = state WHERE false")
    assert len(refused) == 7
    assert AuditEvent.objects.count() >= 2
