"""The demo company for `make run`: its customer database (an SQL source), its
loyalty and chat service (an HTTP source, requests_app/sources/demo_http.py, run as
its own process) and its paper archive (a manual source)."""

import os
from pathlib import Path

import psycopg
import sqlalchemy as sa
from django.conf import settings

from requests_app.demo import shop
from requests_app.models import DataSource, ThirdParty
from requests_app.sources import demo_http
from requests_app.sources.sql import engine_url

MAP_PATH = Path(shop.__file__).with_name("shop_map.yaml")
DEMO_HTTP_PORT = 8765


def demo_shop_dsn() -> str:
    """DEMO_SHOP_DSN, or a default beside the portal's own database: a `demo_shop`
    database on the same PostgreSQL server, or a SQLite file in DATA_DIR."""
    if os.environ.get("DEMO_SHOP_DSN"):
        return os.environ["DEMO_SHOP_DSN"]
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("postgresql"):
        auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
        return f"postgres://{auth}@{db['HOST']}:{db['PORT'] or 5432}/demo_shop"
    return f"sqlite:///{settings.DATA_DIR / 'demo-shop.sqlite3'}"


def ensure_database(dsn: str) -> None:
    if not dsn.startswith(("postgres://", "postgresql://")):
        return
    server, name = dsn.rsplit("/", 1)
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')  # name comes from our own DSN


def build_shop(dsn: str, subjects: int, progress: bool) -> list[str]:
    """Create and fill the demo shop unless it already has customers."""
    ensure_database(dsn)
    engine = sa.create_engine(engine_url(dsn))
    try:
        with engine.connect() as conn:
            if sa.inspect(conn).has_table("customers"):
                count = conn.execute(sa.text("SELECT count(*) FROM customers")).scalar()
                if count:
                    rows = conn.execute(sa.text(
                        "SELECT email FROM customers ORDER BY id LIMIT 1000")).scalars()
                    return list(rows)
        return shop.populate(engine, subjects, progress=progress)
    finally:
        engine.dispose()


def register_sources(manager, emails: list[str]) -> list[DataSource]:
    """The three demo sources and the shop's partners, created once."""
    parties = []
    for name, categories, _purpose in shop.PARTNERS:
        party, _ = ThirdParty.objects.get_or_create(
            name=name.split(": ", 1)[1],
            defaults={"kind": ThirdParty.Kind.SERVICE_PROVIDER if "Payment" in name
                      else ThirdParty.Kind.THIRD_PARTY,
                      "contact_email": "privacy@" + name.split(": ", 1)[1].split()[0].lower()
                      + ".example",
                      "categories": categories.split(",")})
        parties.append(party)
    sql_source, created = DataSource.objects.get_or_create(
        name="Demo shop database",
        defaults={"kind": "sql", "owner": manager, "connection_env": "DEMO_SHOP_DSN",
                  "dataset_map": MAP_PATH.read_text(),
                  "purposes": ["Orders and delivery", "Customer support", "Marketing",
                               "Website analytics", "Fraud prevention"],
                  "retention": "account life + 7 years for orders and payments"})
    if created:
        sql_source.third_parties.set(parties)
    data = settings.DATA_DIR / "demo-http.json"
    if not data.exists():
        demo_http.seed(data, emails[:300])
    http_source, _ = DataSource.objects.get_or_create(
        name="Loyalty and support chat",
        defaults={"kind": "http", "owner": manager,
                  "url": f"http://127.0.0.1:{DEMO_HTTP_PORT}/privacy",
                  "secret_env": "DEMO_HTTP_SECRET", "verify_tls": False, "timeout_seconds": 5,
                  "categories": sorted({c for cats in demo_http.CATEGORIES.values()
                                        for c in cats.values()}),
                  "purposes": ["Loyalty programme", "Customer support"],
                  "retention": "2 years after the last activity"})
    manual_source, _ = DataSource.objects.get_or_create(
        name="Paper archive",
        defaults={"kind": "manual", "owner": manager,
                  "categories": ["user.contact.address", "user.name"],
                  "purposes": ["Warranty claims received by post"],
                  "retention": "6 years",
                  "instructions": "Search the warranty-card cabinets by surname and "
                                  "postcode. Scan what you find into a CSV."})
    return [sql_source, http_source, manual_source]
