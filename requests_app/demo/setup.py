"""The demo company for `make run`: its customer database (an SQL source), its
loyalty and chat service (an HTTP source, requests_app/sources/demo_http.py, run as
its own process) and its paper archive (a manual source)."""

import os
from pathlib import Path

import psycopg
from psycopg import sql
import sqlalchemy as sa
from django.conf import settings

from requests_app.demo import shop
from requests_app.models import DataSource, Purpose, PurposeNotice, ThirdParty
from requests_app.sources import demo_http
from requests_app.sources.sql.driver import engine_url

MAP_PATH = Path(shop.__file__).with_name("shop_map.yaml")
# The demo HTTP source's port (Procfile.dev starts it there).
DEMO_HTTP_PORT = int(os.environ.get("DEMO_HTTP_PORT") or 8765)


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
            # An identifier cannot be a bound parameter: psycopg quotes it as one.
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


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


# What a Right to Know answer calls each partner (by the kind shop.PARTNERS names).
RECIPIENT_CATEGORY = {"Channel partner": "resellers", "Ad network": "advertising",
                      "Analytics provider": "analytics", "Payment processor": "payments"}


def register_sources(manager, emails: list[str]) -> list[DataSource]:
    """The three demo sources and the shop's partners, created once."""
    parties = []
    for name, categories, _purpose in shop.PARTNERS:
        kind, party_name = name.split(": ", 1)
        party, _ = ThirdParty.objects.get_or_create(
            name=party_name,
            defaults={"kind": ThirdParty.Kind.SERVICE_PROVIDER if "Payment" in name
                      else ThirdParty.Kind.THIRD_PARTY,
                      "recipient_category": RECIPIENT_CATEGORY[kind],
                      "contact_email": "privacy@" + party_name.split()[0].lower()
                      + ".example",
                      "categories": categories.split(",")})
        parties.append(party)
    sql_source, created = DataSource.objects.get_or_create(
        name="Demo shop database",
        defaults={"kind": "sql", "owner": manager, "connection_env": "DEMO_SHOP_DSN",
                  "dataset_map": MAP_PATH.read_text(),
                  "purposes": ["Orders and delivery", "Customer support", "Marketing",
                               "Website analytics", "Fraud prevention"],
                  "retention": "account life + 7 years for orders and payments",
                  "collected_from": ["direct", "devices", "partners"],
                  "origin_detail": "Delivery addresses corrected by our carrier; orders "
                                   "placed through Northwind Resellers",
                  "automated_decisions": "Orders are scored for fraud when placed; a high "
                                         "score holds the order for a person to review, "
                                         "never refuses it by itself."})
    if created:
        sql_source.third_parties.set(parties)
    data = settings.DATA_DIR / "demo-http.json"
    if not data.exists():
        data.parent.mkdir(parents=True, exist_ok=True)
        demo_http.seed(data, emails[:300])
    http_source, _ = DataSource.objects.get_or_create(
        name="Loyalty and support chat",
        defaults={"kind": "http", "owner": manager,
                  "url": f"http://127.0.0.1:{DEMO_HTTP_PORT}/privacy",
                  "secret_env": "DEMO_HTTP_SECRET", "verify_tls": False, "timeout_seconds": 5,
                  "categories": sorted({c for cats in demo_http.CATEGORIES.values()
                                        for c in cats.values()}),
                  "purposes": ["Loyalty programme", "Customer support"],
                  "retention": "2 years after the last activity",
                  "collected_from": ["direct", "devices"]})
    manual_source, _ = DataSource.objects.get_or_create(
        name="Paper archive",
        defaults={"kind": "manual", "owner": manager,
                  "categories": ["user.contact.address", "user.name"],
                  "purposes": ["Warranty claims received by post"],
                  "retention": "6 years",
                  "collected_from": ["direct", "public"],
                  "origin_detail": "Postal addresses checked against the national "
                                   "address register",
                  "instructions": "Search the warranty-card cabinets by surname and "
                                  "postcode. Scan what you find into a CSV."})
    return [sql_source, http_source, manual_source]


# The demo company's purposes: (slug, name, basis, opt-out type, honours GPC,
# sources by name, third parties by name, description, notice).
PURPOSES = [
    ("channel-partners", "Share account data with channel partners", "opt_in",
     "opt_out_partners", False, ["Loyalty and support chat"], ["Northwind Resellers"],
     "Your name, email and address passed to resellers who fulfil some orders.",
     "With your permission we give your name, email address and postal address to our "
     "reseller Northwind Resellers so that it can fulfil orders and offer you its own "
     "products. We do this only if you say yes here, and you can withdraw at any time."),
    ("cross-context-ads", "Sale or sharing for cross-context advertising", "opt_out",
     "opt_out_sale", True, ["Loyalty and support chat"], ["Contoso Ads"],
     "Cookie ids and browsing history shared with an ad network to show you ads elsewhere.",
     "We share identifiers from cookies and your browsing on our site with the ad network "
     "Contoso Ads, which uses them to show you our ads on other sites. Under California law "
     "this is “sharing”. Say no here, or send a Global Privacy Control signal, and we stop."),
    ("marketing-email", "Marketing email", "opt_out", "opt_out_marketing", False,
     ["Loyalty and support chat", "Paper archive"], [],
     "Offers and news by email and post.",
     "We send offers and news to customers by email and sometimes by post. Say no and we "
     "remove you from every list within 10 business days."),
    ("sensitive-data", "Use of sensitive data", "opt_in", "limit_sensitive", False, [], [],
     "Using your precise location to suggest nearby pickup points.",
     "With your permission we use your device's precise location to suggest the nearest "
     "pickup point. We never use it for anything else."),
]


def register_purposes(manager) -> list[Purpose]:
    made = []
    for slug, name, basis, opt_out_type, gpc, sources, parties, description, notice in PURPOSES:
        purpose, created = Purpose.objects.get_or_create(slug=slug, defaults={
            "name": name, "basis": basis, "opt_out_type": opt_out_type, "honours_gpc": gpc,
            "description": description})
        if created:
            purpose.sources.set(DataSource.objects.filter(name__in=sources))
            purpose.third_parties.set(ThirdParty.objects.filter(name__in=parties))
            PurposeNotice.objects.create(purpose=purpose, version=1, text=notice,
                                         created_by=manager)
        made.append(purpose)
    return made
