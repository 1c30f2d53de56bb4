"""Triggers that make tables append-only on PostgreSQL (the audit trail, the
consent ledger). Shared by migrations; Django does not load modules whose names
start with an underscore as migrations."""

FUNCTION = """
CREATE OR REPLACE FUNCTION requests_app_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP;
END
$$ LANGUAGE plpgsql;
"""


def add_triggers(schema_editor, tables) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(FUNCTION, params=None)
    for table in tables:
        schema_editor.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION requests_app_append_only()", params=None)


def drop_triggers(schema_editor, tables) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in tables:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}",
                              params=None)


def add_truncate_triggers(schema_editor, tables) -> None:
    """Refuse TRUNCATE, which row triggers never see (also when it arrives by the
    CASCADE of a referenced table's truncation). SQLite has no TRUNCATE.

    Only a session with session_replication_role = replica (a superuser's, on
    purpose) passes: the test suite's flush between tests does that."""
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(FUNCTION, params=None)
    for table in tables:
        schema_editor.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION requests_app_append_only()", params=None)


def drop_truncate_triggers(schema_editor, tables) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in tables:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}",
                              params=None)
