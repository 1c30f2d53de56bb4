"""Give the PostgreSQL role the application runs as what it needs, and no more.

    python manage.py grant_app_role portal_app      (as the tables' owner, after migrate)

Migrations run as the role that owns the tables; web, workers and beat connect as
another role (docs/deployment.md). That role may read and write the ordinary
tables, but on the append-only ones (the audit trail, the consent ledger) only
SELECT and INSERT: it can neither UPDATE, DELETE nor TRUNCATE them, and, not
owning them, cannot disable or drop their triggers. Run it again after each
migrate (new tables need their grants); it starts by revoking, so it is idempotent.
"""

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from requests_app.models.audit import AppendOnlyModel


def append_only_tables() -> set[str]:
    return {model._meta.db_table for model in apps.get_models()
            if issubclass(model, AppendOnlyModel)}


class Command(BaseCommand):
    help = "Grant the application's database role its privileges (PostgreSQL)."

    def add_arguments(self, parser):
        parser.add_argument("role", help="the role web, workers and beat connect as")

    def handle(self, *args, role: str, **options):
        if connection.vendor != "postgresql":
            raise CommandError("grant_app_role is for PostgreSQL.")
        q = connection.ops.quote_name
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT current_schema()")
            schema = q(cursor.fetchone()[0])
            tables = connection.introspection.table_names(cursor)
            guarded = append_only_tables()
            statements = [f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {q(role)}",
                          f"GRANT USAGE ON SCHEMA {schema} TO {q(role)}",
                          f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} "
                          f"TO {q(role)}"]
            for table in tables:
                rights = "SELECT, INSERT" if table in guarded else \
                    "SELECT, INSERT, UPDATE, DELETE"
                statements.append(f"GRANT {rights} ON {q(table)} TO {q(role)}")
            for statement in statements:
                cursor.execute(statement)
        self.stdout.write(f"{role}: SELECT and INSERT only on {', '.join(sorted(guarded))}; "
                          f"SELECT, INSERT, UPDATE, DELETE on the {len(tables) - len(guarded)} "
                          "other tables.")
