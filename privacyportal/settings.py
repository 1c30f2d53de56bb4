"""Settings for Privacy Portal, read from the environment.

Every variable is listed with its default in docs/configuration.md. With nothing
set, the portal runs on its embedded defaults (SQLite, kombu's filesystem broker,
emails written to files); production sets DATABASE_URL, CELERY_BROKER_URL,
SECRET_KEY, FILE_ENCRYPTION_KEY and the email settings.
"""

import base64
import binascii
import datetime
import os
import secrets
import zoneinfo
from pathlib import Path

import dj_database_url
import holidays

from privacyportal.env import env, envbool, envint, envlist, envstr, fail

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(envstr("DATA_DIR", str(BASE_DIR / "var"))).resolve()

# Variables only a production deployment sets. With none of them, the portal runs
# on its embedded defaults as a development setup (DEBUG on, development secrets in
# DATA_DIR), exactly as `make run` does, so `manage.py` commands work there as
# written; as soon as one is set, DEBUG is off unless set, and every secret must come
# from the environment. Each can also come from NAME_FILE.
PRODUCTION_VARIABLES = ("SECRET_KEY", "FILE_ENCRYPTION_KEY", "IDENTITY_HASH_KEY", "DATABASE_URL",
                        "CELERY_BROKER_URL", "CACHE_URL", "EMAIL_HOST", "EMAIL_BACKEND",
                        "ALLOWED_HOSTS", "AUDIT_CHAIN_KEY", "AUDIT_CHECKPOINT_KEY")
DEBUG = envbool("DEBUG", not any(env(name) for name in PRODUCTION_VARIABLES))


def _development_secret(filename: str, make) -> str:
    """A secret kept in DATA_DIR so that a development server (and every command
    run beside it) keeps its sessions and files across restarts. Only ever used
    with DEBUG on."""
    path = DATA_DIR / filename
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        value = make()
        path.write_text(value)
        path.chmod(0o600)
        return value


SECRET_KEY = env("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        fail("SECRET_KEY is not set; set SECRET_KEY (or SECRET_KEY_FILE) when DEBUG is off "
             "(it is off by default once a production variable such as DATABASE_URL is set).")
    SECRET_KEY = _development_secret("dev-secret-key", lambda: secrets.token_urlsafe(50))

# Key for files at rest (packages, uploads): 32 bytes, URL-safe base64 (a Fernet key).
FILE_ENCRYPTION_KEY = env("FILE_ENCRYPTION_KEY")
if not FILE_ENCRYPTION_KEY:
    if not DEBUG:
        fail(
            "FILE_ENCRYPTION_KEY is not set; generate one with "
            "`python -c 'import base64,os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())'`."
        )
    FILE_ENCRYPTION_KEY = _development_secret(
        "dev-file-key", lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    )
try:
    if len(base64.urlsafe_b64decode(FILE_ENCRYPTION_KEY.encode())) != 32:
        raise ValueError
except (ValueError, binascii.Error):
    fail("FILE_ENCRYPTION_KEY must be 32 bytes in URL-safe base64 (44 characters).")

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])
# The public address of the site, used in links inside emails.
SITE_URL = envstr("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_fsm",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "axes",
    "requests_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Pages with personal data are never cached; a control character in a path is a
    # 404, as is an object a path names that does not exist (requests_app/middleware.py).
    "requests_app.middleware.NoStoreMiddleware",
    "requests_app.middleware.PathGuardMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "requests_app.preferences.middleware.GlobalPrivacyControlMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Every page of /staff/, /audit/ and /admin/ needs a staff login verified by a
    # TOTP code, and ends after STAFF_IDLE_MINUTES without a request.
    "requests_app.staff.access.StaffAccessMiddleware",
    # Last, as django-axes asks: turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

# Staff login: password and TOTP code (django-otp), lockout by django-axes.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "/staff/login/"
# Failed logins (a wrong password or a wrong code) from one address for one user
# name before that pair is locked out, and for how long. Attempts are counted in
# the database, so every web process sees them.
AXES_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = datetime.timedelta(minutes=envint("LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "staff/locked_out.html"
AXES_VERBOSE = False  # no user names or addresses in the log
# The client's address: the socket's, or behind a trusted proxy the one it appends
# to X-Forwarded-For (a client-sent header must never choose whom to lock out).
if envbool("TRUST_X_FORWARDED_PROTO", False):
    AXES_IPWARE_PROXY_COUNT = 1
    AXES_IPWARE_META_PRECEDENCE_ORDER = ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"]
else:
    AXES_IPWARE_META_PRECEDENCE_ORDER = ["REMOTE_ADDR"]
# TOTP codes: after each wrong code the device waits twice as long as before
# (1 s, 2 s, 4 s, ...) before it checks another: django-otp's throttling.
OTP_TOTP_ISSUER = envstr("OTP_ISSUER", "Privacy Portal")
OTP_TOTP_THROTTLE_FACTOR = 1
# A staff session ends after this many minutes without a request (and always
# after SESSION_COOKIE_AGE seconds).
STAFF_IDLE_MINUTES = envint("STAFF_IDLE_MINUTES", 30, minimum=1)

ROOT_URLCONF = "privacyportal.urls"
WSGI_APPLICATION = "privacyportal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "requests_app.preferences.middleware.gpc",
            ],
        },
    },
]

# Database: SQLite in DATA_DIR unless DATABASE_URL is set (postgres://user@host:5432/name).
DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'privacyportal.sqlite3'}",
        conn_max_age=envint("DATABASE_CONN_MAX_AGE", 60, minimum=0),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets the web server read while a worker writes; the busy timeout and
        # IMMEDIATE transactions make writers queue instead of failing with "locked".
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
     "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English")]
TIME_ZONE = envstr("TIME_ZONE", "UTC")
if TIME_ZONE not in zoneinfo.available_timezones():
    fail(f"TIME_ZONE must be an IANA time zone such as America/Chicago, not {TIME_ZONE!r}.")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(envstr("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
MEDIA_ROOT = Path(envstr("MEDIA_ROOT", str(DATA_DIR / "files")))

# Email. With no EMAIL_HOST, messages are written as files to DATA_DIR/mail, the
# development outbox: never to the console or a log, since they hold personal data.
EMAIL_HOST = env("EMAIL_HOST", "")
if not DEBUG and not EMAIL_HOST and not env("EMAIL_BACKEND"):
    fail("EMAIL_HOST is not set; consumers must get their emails (set EMAIL_HOST, or "
         "EMAIL_BACKEND to choose another backend on purpose).")
EMAIL_BACKEND = envstr(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.filebased.EmailBackend",
)
EMAIL_FILE_PATH = DATA_DIR / "mail"
EMAIL_PORT = envint("EMAIL_PORT", 587, minimum=1)
EMAIL_HOST_USER = envstr("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = envstr("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", True)
EMAIL_USE_SSL = envbool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = envint("EMAIL_TIMEOUT", 20, minimum=1)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    fail("EMAIL_USE_TLS and EMAIL_USE_SSL cannot both be on; set EMAIL_USE_TLS=0 for port 465.")
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "Privacy Office <privacy@localhost>")
# Letters to requesters with no email address (services/notices/letters.py): the
# return address printed at the top ("|" or a line break between lines), the
# TrueType font (any script a name may use; Debian's fonts-dejavu-core), and how
# long a one-time code sent by letter stays good (the post takes days).
LETTER_RETURN_ADDRESS = envstr("LETTER_RETURN_ADDRESS", "Privacy Office")
LETTER_FONT = envstr("LETTER_FONT", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
LETTER_CODE_TTL_DAYS = envint("LETTER_CODE_TTL_DAYS", 21, minimum=1)
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# Security. Production runs behind TLS; these defaults make `check --deploy` clean.
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = envbool("SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = envint("SESSION_COOKIE_AGE", 8 * 3600, minimum=60)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
# Preloading is hard to undo, so it is the operator's decision (off by default;
# check --deploy's reminder about it, security.W021, is silenced below).
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = ["security.W021"]
# Load balancers probe /healthz over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if envbool("TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Celery. Embedded default: kombu's filesystem transport in DATA_DIR (no server
# needed, a real worker process still runs the tasks). Production: Redis.
CELERY_BROKER_URL = envstr("CELERY_BROKER_URL", "filesystem://localhost//")
CELERY_BROKER_TRANSPORT_OPTIONS = {}
if CELERY_BROKER_URL.startswith("filesystem:"):
    _broker_dir = DATA_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
elif CELERY_BROKER_URL.startswith(("redis:", "rediss:")):
    # A task is redelivered if its worker has not acknowledged it within this
    # time; it must exceed the longest task (acks are late, see celery.py).
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": envint("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=60)
    }
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")

# Cache, shared by every web process: rate limits and login lockouts count here.
# Redis when CACHE_URL (or else a Redis broker) names one, files in DATA_DIR otherwise.
CACHE_URL = envstr("CACHE_URL", "")
if not CACHE_URL and CELERY_BROKER_URL.startswith(("redis:", "rediss:")):
    CACHE_URL = CELERY_BROKER_URL
if CACHE_URL.startswith(("redis:", "rediss:")):
    # A cache that does not answer within 2 s counts as away (the rate limits then
    # count in the database: ratelimit.py), never as a hung page.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": CACHE_URL, "KEY_PREFIX": "pp",
                          "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2}}}
elif CACHE_URL:
    fail(f"CACHE_URL must be a redis:// URL, not {CACHE_URL.split(':')[0]!r}.")
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                          "LOCATION": str(DATA_DIR / "cache")}}

# Request handling.
# Business days skip the holidays common to every calendar a jurisdiction names in
# rules.py, and the office's own closures: ISO dates (2026-12-24) and calendars of
# the `holidays` package (US-CA: every California state holiday) the office closes on.
OFFICE_CLOSURES = envlist("OFFICE_CLOSURES", [])
for _closure in OFFICE_CLOSURES:
    _country, _, _subdiv = _closure.partition("-")
    if _closure[:1].isdigit():
        try:
            datetime.date.fromisoformat(_closure)
        except ValueError:
            fail(f"OFFICE_CLOSURES: {_closure!r} is not a date written as YYYY-MM-DD.")
    elif _country not in holidays.list_supported_countries() or (
            _subdiv and _subdiv not in holidays.country_holidays(_country).subdivisions):
        fail(f"OFFICE_CLOSURES: {_closure!r} is neither a date (YYYY-MM-DD) nor a calendar of "
             f"the holidays package such as US-CA or GB.")
# Deprecated (use the rule table and OFFICE_CLOSURES): when set, business days skip
# this one country's holidays in every jurisdiction, as before (a system check warns).
HOLIDAY_COUNTRY = envstr("HOLIDAY_COUNTRY", "")
if HOLIDAY_COUNTRY and HOLIDAY_COUNTRY not in holidays.list_supported_countries():
    fail(f"HOLIDAY_COUNTRY must be a country code of the holidays package such as US or GB, "
         f"not {HOLIDAY_COUNTRY!r}.")
# Preference links in marketing emails work for this many days; a preference-page
# session (after a link or a code) lasts this many minutes.
PREFERENCE_LINK_MAX_AGE_DAYS = envint("PREFERENCE_LINK_MAX_AGE_DAYS", 60, minimum=1)
PREFERENCE_SESSION_MINUTES = envint("PREFERENCE_SESSION_MINUTES", 30, minimum=1)
# Disclosure tables of SQL sources are read in pages of this many rows.
DISCLOSURE_SCAN_BATCH = envint("DISCLOSURE_SCAN_BATCH", 5000, minimum=100)
# An answered request (completed, denied, appeal denied) with no change for this many
# days and no download link still live closes by itself (daily), so that retention
# and the verification purge start.
AUTO_CLOSE_QUIET_DAYS = envint("AUTO_CLOSE_QUIET_DAYS", 30, minimum=1)
# A request whose identity is not verified within this many days expires.
VERIFICATION_WINDOW_DAYS = envint("VERIFICATION_WINDOW_DAYS", 30, minimum=1)

# A source run claimed by a worker that has sent no heartbeat for this long is
# taken to be orphaned (the worker died) and is dispatched again. A live attempt
# beats every third of it whatever it is doing, so it can be short.
SOURCE_RUN_STALE_SECONDS = envint("SOURCE_RUN_STALE_SECONDS", 60, minimum=2)
# A source run's attempt beats its heart while it works, for at most this long: then
# it is presumed hung and may be taken over.
SOURCE_RUN_MAX_SECONDS = envint("SOURCE_RUN_MAX_SECONDS", 6 * 3600, minimum=60)
# Each Celery worker writes a heartbeat to the database this often; one silent for
# three beats is reported dead by /healthz and the work it held is sent again.
WORKER_HEARTBEAT_SECONDS = envint("WORKER_HEARTBEAT_SECONDS", 10, minimum=1)
# /healthz says "degraded" when a queue's oldest message has waited longer than this.
HEALTHZ_BACKLOG_SECONDS = envint("HEALTHZ_BACKLOG_SECONDS", 300, minimum=1)
# Work the database says is due (an email, a follow-up step) that has waited this
# long is sent again by the reconciler (the broker lost it, or was down).
RECONCILE_AFTER_SECONDS = envint("RECONCILE_AFTER_SECONDS", 300, minimum=2)
# Months after closure when a request's identity and material are purged (§7101: 24).
RETENTION_MONTHS = envint("RETENTION_MONTHS", 24, minimum=1)
# The circuit breaker of sources (services/fulfilment/breaker.py): after this many
# calls in a row fail on a timeout, a refused connection or a 5xx, the source is
# marked unhealthy and its runs are parked (no more calls) until it answers a health
# probe, tried this many seconds after the last (doubling while it stays unhealthy),
# or staff retry it.
SOURCE_BREAKER_FAILURES = envint("SOURCE_BREAKER_FAILURES", 3, minimum=1)
SOURCE_PROBE_SECONDS = envint("SOURCE_PROBE_SECONDS", 30, minimum=1)
# At most this many runs of one source at work at once (0: no limit): a source that
# hangs holds at most this many worker processes, and the others' runs go on. Keep
# it below the number of processes serving the "sources" queue.
SOURCE_MAX_CONCURRENT_RUNS = envint("SOURCE_MAX_CONCURRENT_RUNS", 2, minimum=0)
# An HTTP source that answered 202 and has not called back after this long fails.
HTTP_REPLY_TIMEOUT_HOURS = envint("HTTP_REPLY_TIMEOUT_HOURS", 24, minimum=1)
# Staff's daily digest lists open requests due within this many business days (and
# the overdue ones).
STAFF_DIGEST_BUSINESS_DAYS = envint("STAFF_DIGEST_BUSINESS_DAYS", 3, minimum=0)
# Owners of manual sources are reminded of a waiting task this often.
MANUAL_REMINDER_DAYS = envint("MANUAL_REMINDER_DAYS", 2, minimum=1)
# Packages for consumers: how long a download link lives, how often it may be used.
DOWNLOAD_LINK_DAYS = envint("DOWNLOAD_LINK_DAYS", 7, minimum=1)
DOWNLOAD_MAX_COUNT = envint("DOWNLOAD_MAX_COUNT", 5, minimum=1)
# The data protection supervisory authority a GDPR answer, denial and denied appeal
# name (GDPR Art. 13(2)(d), 15(1)(f), 77): the office's lead authority, with how to
# reach it. Set it to yours (rules.GDPR_REMEDIES words the rest).
SUPERVISORY_AUTHORITY = envstr(
    "SUPERVISORY_AUTHORITY",
    "the data protection authority of the country where we are established (the list of "
    "EU authorities: edpb.europa.eu/about-edpb/about-edpb/members_en; in the United "
    "Kingdom, the Information Commissioner's Office, ico.org.uk)")
# A third party's link to confirm a deletion or opt-out notice works this long; after
# that it replies by email and staff record the answer on the request's desk.
THIRD_PARTY_LINK_DAYS = envint("THIRD_PARTY_LINK_DAYS", 60, minimum=1)

# One-time codes sent by email (services/codes.py): how long one is good for, how
# many wrong tries lock it, and how often a new one may be sent (at most once per
# CODE_RESEND_SECONDS and CODE_MAX_PER_DAY times a day for the same address and purpose).
CODE_TTL_HOURS = envint("CODE_TTL_HOURS", 24, minimum=1)
CODE_MAX_FAILURES = envint("CODE_MAX_FAILURES", 5, minimum=1)
CODE_RESEND_SECONDS = envint("CODE_RESEND_SECONDS", 60, minimum=1)
CODE_MAX_PER_DAY = envint("CODE_MAX_PER_DAY", 5, minimum=1)
# Rate limits of the public pages (requests_app/ratelimit.py), per hour, counted in
# the cache: posts of the request form per IP address and per email address, and
# code entries (and code requests) per IP address and per email address.
RATELIMIT_ENABLED = envbool("RATELIMIT_ENABLED", True)
RATELIMIT_FORM_PER_IP = envint("RATELIMIT_FORM_PER_IP", 20, minimum=1)
RATELIMIT_FORM_PER_EMAIL = envint("RATELIMIT_FORM_PER_EMAIL", 10, minimum=1)
RATELIMIT_CODE_PER_IP = envint("RATELIMIT_CODE_PER_IP", 30, minimum=1)
RATELIMIT_CODE_PER_EMAIL = envint("RATELIMIT_CODE_PER_EMAIL", 15, minimum=1)
# The signed permission an authorized agent uploads: largest size in bytes.
AGENT_PERMISSION_MAX_BYTES = envint("AGENT_PERMISSION_MAX_BYTES", 5 * 1024 * 1024, minimum=1024)
# The office's own identity types (a loyalty id) that the portal form asks for,
# among those the enabled sources' maps look people up by; staff intake offers all.
PORTAL_IDENTITY_TYPES = envlist("PORTAL_IDENTITY_TYPES", [])
# A portal status session (opened with a code) lasts this many minutes.
STATUS_SESSION_MINUTES = envint("STATUS_SESSION_MINUTES", 30, minimum=1)
# Uploads larger than this are streamed to a temporary file rather than held in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

# The demo company's sources (`make run`): their secrets, for development only.
if DEBUG:
    os.environ.setdefault("DEMO_HTTP_SECRET", "demo-http-secret")

LOG_LEVEL = envstr("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
    fail(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not {LOG_LEVEL!r}.")

# Key of the hashes of personal values (audit trail, suppression list, hashed
# columns in sources). Set it explicitly so that SECRET_KEY can be rotated without
# breaking the matching of old hashes; by default it is derived from SECRET_KEY.
IDENTITY_HASH_KEY = env("IDENTITY_HASH_KEY") or f"identity-hash:{SECRET_KEY}"

# The audit trail's tamper evidence (docs/audit.md). AUDIT_CHAIN_KEY keys the hash
# chain (HMAC-SHA256): the database never holds it, so whoever can write the table
# cannot recompute the chain. AUDIT_CHECKPOINT_KEY signs the checkpoints of the
# chain's head (Ed25519, its 32-byte seed in URL-safe base64), written every
# AUDIT_CHECKPOINT_MINUTES to a file per day in AUDIT_CHECKPOINT_DIR, outside the
# database (point it at append-only or write-once storage).
AUDIT_CHAIN_KEY = env("AUDIT_CHAIN_KEY")
AUDIT_CHECKPOINT_KEY = env("AUDIT_CHECKPOINT_KEY")
for _name, _value in (("AUDIT_CHAIN_KEY", AUDIT_CHAIN_KEY),
                      ("AUDIT_CHECKPOINT_KEY", AUDIT_CHECKPOINT_KEY)):
    if not _value and not DEBUG:
        fail(f"{_name} is not set; generate one with `python -c 'import base64,os; "
             f"print(base64.urlsafe_b64encode(os.urandom(32)).decode())'` and keep a copy "
             "(the audit trail's tamper evidence needs it).")
if not AUDIT_CHAIN_KEY:
    AUDIT_CHAIN_KEY = _development_secret(
        "dev-audit-chain-key", lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
if not AUDIT_CHECKPOINT_KEY:
    AUDIT_CHECKPOINT_KEY = _development_secret(
        "dev-audit-checkpoint-key",
        lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
try:
    if len(base64.urlsafe_b64decode(AUDIT_CHECKPOINT_KEY.encode())) != 32:
        raise ValueError
except (ValueError, binascii.Error):
    fail("AUDIT_CHECKPOINT_KEY must be 32 bytes in URL-safe base64 (44 characters).")
if AUDIT_CHECKPOINT_KEY == AUDIT_CHAIN_KEY:
    fail("AUDIT_CHECKPOINT_KEY must differ from AUDIT_CHAIN_KEY.")
AUDIT_CHECKPOINT_DIR = Path(envstr("AUDIT_CHECKPOINT_DIR", str(DATA_DIR / "audit-checkpoints")))
AUDIT_CHECKPOINT_MINUTES = envint("AUDIT_CHECKPOINT_MINUTES", 5, minimum=1)
# Besides the Auditor role's members: addresses the day's checkpoints are emailed to.
AUDIT_CHECKPOINT_EMAILS = envlist("AUDIT_CHECKPOINT_EMAILS", [])

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # fontTools (under fpdf2's letters) lists every glyph of a letter at INFO: the
    # characters of a person's name and address, which logs never hold.
    "loggers": {"fontTools": {"level": "WARNING"}},
}
