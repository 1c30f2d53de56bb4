"""Gathering a person's rows for a Right to Know or portability answer: the rows
traversal finds, written to the sink as they arrive, and leaf tables with very
many rows copied and formatted by PostgreSQL itself.

`run_work(work, read_only=False)` is the connector's: work(conn, tables) on a
pooled connection, database errors turned into SourceErrors; `connect()` opens
another connection of the same engine."""

import sqlalchemy as sa

from requests_app.csvcells import SQL_NEGATIVE_NUMBER, SQL_TRIGGER
from requests_app.sources.base import Outcome, collection_period, in_period, period_bounds
from requests_app.sources.sql.driver import _arrays, _copy_out, psycopg
from requests_app.sources.sql.shape import MapShape
from requests_app.sources.sql.traversal import leaf_where, traverse


def gather(shape: MapShape, run_work, connect, run, identity, sink) -> Outcome:
    """The person's rows, written to `sink`. For a Right to Know request with a
    period, rows of tables whose map names a `collected_at` column are written
    only when collected in it (or when that time is empty); undated rows reached
    only through a row left out are not reached (an old order's items and shipping
    address), dated ones are judged by their own date (a new message on an old
    ticket is shown); a copied leaf leaves its rows out in its COPY.
    result["outside_period"] counts the dated rows left out per table."""
    period = collection_period(run)
    outside: dict[str, int] = {}
    found: dict = {}

    def work(conn, tables):
        categories = shape.categories  # {table: {column: category}}, worked out once

        def on_row(name, row):
            spec = shape.map.tables[name]
            if period and spec.collected_at and not in_period(row[spec.collected_at],
                                                              period):
                outside[name] = outside.get(name, 0) + 1
                return False  # and what is reached only through it (an order's items)
            columns = categories[name]
            sink.write(name, {c: row[c] for c in columns}, columns)

        copies = _arrays(conn) and psycopg is not None and hasattr(sink, "write_copy")
        dated = {n for n, spec in shape.map.tables.items() if spec.collected_at}
        trav = traverse(conn, tables, shape, identity, on_row,
                        bulk=shape.leaves(tables) if copies else (),
                        through=dated if period else ())
        counts = {name: len(keys) - len(trav.withheld.get(name, ())) - outside.get(name, 0)
                  for name, keys in trav.seen.items()}
        found.update(withheld={n: len(k) for n, k in trav.withheld.items() if k},
                     unsupplied=trav.unsupplied)
        for name, conditions in trav.leaves.items():
            counts[name] = _copy_leaf(conn, connect, shape, tables[name], conditions, sink,
                                      period, outside)
        return counts

    counts = run_work(work, read_only=True)
    result = {"tables": counts, **seen_notes(shape, found["withheld"], found["unsupplied"])}
    if period:
        result["period"] = [period[0].isoformat(), period[1].isoformat()]
        result["outside_period"] = outside
        # A map that names no `collected_at` column cannot tell what was collected
        # when: the package lists the source as one that could not filter by date.
        result["period_applied"] = any(s.collected_at for s in shape.map.tables.values())
    return Outcome(records=sum(counts.values()), result=result)


def seen_notes(shape: MapShape, withheld: dict, unsupplied: set) -> dict:
    """What a run's result says besides its counts, so that staff see every
    guess and every gap: rows withheld because they are tied to others too
    ({table: rows}, "linked to you and to others, withheld"), identity types the
    map has that the request did not supply (not looked up), keys read from the
    database because the map declares none, tables no reference leads to in its
    declared direction (not reached, and why)."""
    notes = {}
    if withheld:
        notes["withheld_linked_to_others"] = withheld
    if unsupplied:
        notes["identity_types_not_looked_up"] = sorted(unsupplied)
    if shape.keys_read:
        notes["keys_read_from_database"] = shape.keys_read
    if shape.against_direction:
        notes["not_reached_against_direction"] = shape.against_direction
    return notes


def _copy_leaf(conn, connect, shape: MapShape, table, conditions, sink, period=None,
               outside=None) -> int:
    """A leaf table with very many rows of the person's (web_events), formatted by
    PostgreSQL itself: `COPY (SELECT row_to_json(t) ...) TO STDOUT` as JSON lines
    and `COPY (SELECT ...) TO STDOUT (FORMAT csv, HEADER)`, the bytes streamed
    into the sink's encrypted files, no row ever becoming a Python object. The
    sink runs the two at once (the CSV one on a second pooled connection), so
    the database formats both while we deflate and encrypt.
    Columns of the categories the request's jurisdiction holds back (the sink
    knows which: sink.withholds) are replaced by a constant in the SELECT itself,
    so their values never leave the database. The select is built
    by SQLAlchemy (identifiers quoted); COPY takes no server-side parameters, so
    psycopg binds the values client-side, as literals it quotes itself."""
    from requests_app.sources.categories import WITHHELD

    spec = shape.map.tables[table.name]
    categories = {c.name: c.category for c in spec.columns.values()}
    selected = [sa.literal(WITHHELD, sa.Text).label(name) if sink.withholds(category)
                else table.c[name] for name, category in categories.items()]
    where = leaf_where(conn, table, conditions)
    if period and spec.collected_at:  # the rows of the period (or of no known time)
        where = sa.and_(where, _in_period(conn, table, spec, where, period, outside))
    from psycopg import sql

    compiled = (sa.select(*selected).where(where).compile(dialect=conn.dialect))
    inner, params = sql.SQL(str(compiled)), compiled.params  # composed, not formatted
    # The CSV's cells as csvcells.cell writes them (the JSON keeps the values exact).
    csv_select = sa.select(*[_csv_cell(c) for c in selected]).where(where).compile(
        dialect=conn.dialect)
    # JSON lines: CSV format with a quote and a delimiter that JSON text never
    # holds raw (it escapes control characters), so each line is the JSON as is.
    as_json = sql.SQL("COPY (SELECT row_to_json(t) FROM ({}) AS t) TO STDOUT "
                      "(FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')").format(inner)
    as_csv = sql.SQL("COPY ({}) TO STDOUT (FORMAT csv, HEADER)").format(
        sql.SQL(str(csv_select)))

    def json_lines(write):
        _copy_out(conn, as_json, params, write)

    def csv(write):  # at the same time, in another thread: a connection of its own
        with connect() as other:
            _copy_out(other, as_csv, csv_select.params, write)

    return sink.write_copy(spec.name, categories, json_lines, csv)


# Column types whose text can never start a formula (a negative number is kept).
_PLAIN_TYPES = (sa.Boolean, sa.Integer, sa.Numeric, sa.Date, sa.DateTime, sa.Time)


def _csv_cell(column):
    """A selected column as the CSV cell csvcells.cell would write (PostgreSQL): a
    text that begins with = + - @, a tab or a return gets a quote before it."""
    if isinstance(column.type, _PLAIN_TYPES):
        return column
    value = column.element if isinstance(column, sa.sql.elements.Label) else column
    text = sa.cast(value, sa.Text)
    return sa.case((sa.and_(text.op("~")(SQL_TRIGGER), text.op("!~")(SQL_NEGATIVE_NUMBER)),
                    sa.literal("'", sa.Text) + text), else_=text).label(column.name)


def _in_period(conn, table, spec, where, period, outside):
    """The condition that keeps the rows collected in the period (or at no known
    time); the rows `where` finds outside it are counted in `outside`."""
    when = table.c[spec.collected_at]
    aware = isinstance(when.type, sa.DateTime) and when.type.timezone
    first, after = period_bounds(period, aware)
    kept = sa.or_(when.is_(None), sa.and_(when >= first, when < after))
    left_out = conn.execute(sa.select(sa.func.count()).select_from(table).where(
        where, sa.not_(kept))).scalar()
    if left_out and outside is not None:
        outside[table.name] = left_out
    return kept
