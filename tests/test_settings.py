"""Settings come from the environment; each test starts a fresh interpreter with
only the variables it names, so the defaults are the real defaults."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PRINT_SETTINGS = """
import json, django
from django.conf import settings
django.setup()
print(json.dumps({
    "engine": settings.DATABASES["default"]["ENGINE"],
    "db_name": str(settings.DATABASES["default"]["NAME"]),
    "db_options": settings.DATABASES["default"].get("OPTIONS", {}),
    "broker": settings.CELERY_BROKER_URL,
    "broker_options": settings.CELERY_BROKER_TRANSPORT_OPTIONS,
    "debug": settings.DEBUG,
    "email_backend": settings.EMAIL_BACKEND,
    "time_zone": settings.TIME_ZONE,
    "allowed_hosts": settings.ALLOWED_HOSTS,
    "from_email": settings.DEFAULT_FROM_EMAIL,
    "ssl_redirect": settings.SECURE_SSL_REDIRECT,
}))
"""


# The audit trail's keys, required with DEBUG off like the other secrets.
AUDIT_KEYS = {"AUDIT_CHAIN_KEY": "chain-key-" + "c" * 40, "AUDIT_CHECKPOINT_KEY": "C" * 43 + "="}


def run_python(code, env, tmp_path, *args):
    base = {"PATH": os.environ["PATH"], "DATA_DIR": str(tmp_path / "data"),
            "DJANGO_SETTINGS_MODULE": "privacyportal.settings"}
    return subprocess.run(
        [sys.executable, *args, *(["-c", code] if code else [])],
        cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=60,
    )


def test_with_nothing_set_it_runs_on_the_embedded_defaults(tmp_path):
    result = run_python(PRINT_SETTINGS, {}, tmp_path)
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["debug"] is True  # a development setup, as `make run` gives
    assert values["engine"] == "django.db.backends.sqlite3"
    assert values["db_name"] == str(tmp_path / "data" / "privacyportal.sqlite3")
    assert "journal_mode=WAL" in values["db_options"]["init_command"]
    assert values["db_options"]["timeout"] == 20
    assert values["broker"] == "filesystem://localhost//"
    assert values["broker_options"]["data_folder_in"] == str(tmp_path / "data/broker/queue")
    assert values["email_backend"] == "django.core.mail.backends.filebased.EmailBackend"
    assert values["time_zone"] == "UTC"
    assert values["allowed_hosts"] == ["localhost", "127.0.0.1", "[::1]"]
    assert values["ssl_redirect"] is False
    # A development secret was made and kept for the next start.
    assert (tmp_path / "data" / "dev-secret-key").stat().st_mode & 0o777 == 0o600


def test_commands_run_with_nothing_set_share_the_development_secrets(tmp_path):
    code = "import django; from django.conf import settings; print(settings.SECRET_KEY)"
    first = run_python(code, {}, tmp_path)
    second = run_python(code, {"DEBUG": "1"}, tmp_path)  # as `make run` starts its processes
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert len(first.stdout.strip()) >= 50
    kept = (tmp_path / "data" / "dev-secret-key").read_text()
    assert first.stdout == second.stdout == kept + "\n"


def test_production_variables_select_postgresql_redis_and_smtp(tmp_path):
    env = {
        "SECRET_KEY": "s" * 50,
        "FILE_ENCRYPTION_KEY": "A" * 43 + "=",
        **AUDIT_KEYS,
        "DATABASE_URL": "postgres://portal:pw@db.internal:5432/portal",
        "CELERY_BROKER_URL": "redis://queue.internal:6379/0",
        "EMAIL_HOST": "smtp.internal",
        "DEFAULT_FROM_EMAIL": "Privacy <privacy@example.com>",
        "TIME_ZONE": "America/Chicago",
        "ALLOWED_HOSTS": "privacy.example.com, www.example.com",
    }
    result = run_python(PRINT_SETTINGS, env, tmp_path)
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["engine"] == "django.db.backends.postgresql"
    assert values["broker"] == "redis://queue.internal:6379/0"
    assert values["broker_options"] == {"visibility_timeout": 3600}
    assert values["email_backend"] == "django.core.mail.backends.smtp.EmailBackend"
    assert values["debug"] is False and values["ssl_redirect"] is True
    assert values["allowed_hosts"] == ["privacy.example.com", "www.example.com"]
    assert values["time_zone"] == "America/Chicago"


def test_secrets_can_come_from_files(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-a-file-" + "x" * 40 + "\n")
    code = "import django; from django.conf import settings; print(settings.SECRET_KEY)"
    result = run_python(code, {"DEBUG": "1", "SECRET_KEY_FILE": str(secret)}, tmp_path)
    assert result.stdout.strip() == "from-a-file-" + "x" * 40


def one_sentence_failure(result, *words):
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0]
    return lines[0]


@pytest.mark.parametrize("env", [
    {"DEBUG": "0"},
    {"FILE_ENCRYPTION_KEY": "A" * 43 + "="},
    {"DEBUG": "0", "DATABASE_URL": "postgres://portal:pw@db.internal:5432/portal",
     "CELERY_BROKER_URL": "redis://queue.internal:6379/0", "EMAIL_HOST": "smtp.internal"},
], ids=["debug-off", "a-production-key", "production-services"])
def test_without_secret_key_and_debug_off_start_up_fails_with_one_sentence(tmp_path, env):
    result = run_python(None, env, tmp_path, "manage.py", "check")
    line = one_sentence_failure(result, "SECRET_KEY")
    assert line.startswith("Privacy Portal cannot start:")
    assert not (tmp_path / "data" / "dev-secret-key").exists()


# The variables a production deployment sets; any one of them means "not a
# development setup" (docs/configuration.md).
PRODUCTION_VARIABLES = ["SECRET_KEY", "FILE_ENCRYPTION_KEY", "IDENTITY_HASH_KEY", "DATABASE_URL",
                        "CELERY_BROKER_URL", "CACHE_URL", "EMAIL_HOST", "EMAIL_BACKEND",
                        "ALLOWED_HOSTS", "AUDIT_CHAIN_KEY", "AUDIT_CHECKPOINT_KEY"]


@pytest.mark.parametrize("name", PRODUCTION_VARIABLES)
def test_any_production_variable_turns_debug_off_by_default(tmp_path, name):
    """A production host never falls back to development secrets: whichever of its
    variables it sets (directly or as NAME_FILE), DEBUG stays off unless set, so a
    missing SECRET_KEY stops start-up."""
    value = tmp_path / "value"
    value.write_text({"DATABASE_URL": "postgres://portal@db.internal/portal",
                      "CELERY_BROKER_URL": "redis://queue.internal:6379/0",
                      "CACHE_URL": "redis://queue.internal:6379/1",
                      "FILE_ENCRYPTION_KEY": "A" * 43 + "="}.get(name, "value.example"))
    for env in ({name: value.read_text()}, {f"{name}_FILE": str(value)}):
        result = run_python(None, env, tmp_path, "manage.py", "check")
        wanted = "FILE_ENCRYPTION_KEY" if name == "SECRET_KEY" else "SECRET_KEY"
        one_sentence_failure(result, wanted)
    assert not (tmp_path / "data" / "dev-secret-key").exists()


def test_without_file_encryption_key_and_debug_off_start_up_fails(tmp_path):
    result = run_python(None, {"SECRET_KEY": "s" * 50}, tmp_path, "manage.py", "check")
    one_sentence_failure(result, "FILE_ENCRYPTION_KEY")


def test_without_the_audit_keys_and_debug_off_start_up_fails(tmp_path):
    """The audit trail's tamper evidence needs its two keys from the environment; a
    checkpoint key that is not an Ed25519 seed, or equal to the chain's, is refused."""
    base = {"SECRET_KEY": "s" * 50, "FILE_ENCRYPTION_KEY": "A" * 43 + "=",
            "EMAIL_HOST": "smtp.internal", **AUDIT_KEYS}
    for env, word in [
        ({**base, "AUDIT_CHAIN_KEY": ""}, "AUDIT_CHAIN_KEY"),
        ({**base, "AUDIT_CHECKPOINT_KEY": ""}, "AUDIT_CHECKPOINT_KEY"),
        ({**base, "AUDIT_CHECKPOINT_KEY": "short"}, "32 bytes"),
        ({**base, "AUDIT_CHAIN_KEY": base["AUDIT_CHECKPOINT_KEY"]}, "must differ"),
    ]:
        one_sentence_failure(run_python(None, env, tmp_path, "manage.py", "check"), word)


def test_the_development_audit_keys_are_made_once_and_kept(tmp_path):
    code = ("import django; from django.conf import settings; "
            "print(settings.AUDIT_CHAIN_KEY, settings.AUDIT_CHECKPOINT_KEY)")
    first = run_python(code, {}, tmp_path)
    second = run_python(code, {"DEBUG": "1"}, tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    chain, checkpoint = first.stdout.split()
    assert chain == (tmp_path / "data" / "dev-audit-chain-key").read_text() != checkpoint
    assert (tmp_path / "data" / "dev-audit-checkpoint-key").stat().st_mode & 0o777 == 0o600


def test_a_malformed_value_names_the_variable(tmp_path):
    for env, word in [
        ({"DEBUG": "maybe"}, "DEBUG"),
        ({"DEBUG": "1", "EMAIL_PORT": "smtp"}, "EMAIL_PORT"),
        ({"DEBUG": "1", "TIME_ZONE": "Mars/Olympus"}, "TIME_ZONE"),
        ({"DEBUG": "1", "FILE_ENCRYPTION_KEY": "short"}, "FILE_ENCRYPTION_KEY"),
        ({"DEBUG": "1", "SECRET_KEY_FILE": str(tmp_path / "missing")}, "SECRET_KEY_FILE"),
        ({"DEBUG": "1", "HOLIDAY_COUNTRY": "us"}, "HOLIDAY_COUNTRY"),
        ({"DEBUG": "1", "OFFICE_CLOSURES": "2026-02-30"}, "OFFICE_CLOSURES"),
        ({"DEBUG": "1", "OFFICE_CLOSURES": "US-XX"}, "OFFICE_CLOSURES"),
        ({"DEBUG": "1", "LOG_LEVEL": "chatty"}, "LOG_LEVEL"),
        ({"SECRET_KEY": "s" * 50, "FILE_ENCRYPTION_KEY": "A" * 43 + "="}, "EMAIL_HOST"),
    ]:
        result = run_python(None, env, tmp_path, "manage.py", "check")
        one_sentence_failure(result, word)


def test_production_settings_pass_the_deployment_checklist(tmp_path):
    env = {
        "SECRET_KEY": "kd8$2n!x" * 8,
        "FILE_ENCRYPTION_KEY": "A" * 43 + "=",
        **AUDIT_KEYS,
        "ALLOWED_HOSTS": "privacy.example.com",
        "EMAIL_HOST": "smtp.example.com",
    }
    result = run_python(None, env, tmp_path, "manage.py", "check", "--deploy", "--fail-level",
                        "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
