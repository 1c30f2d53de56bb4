"""The foreign schema of bench_foreign.py: a company database the project did not
design, written as SQLAlchemy Core (not the demo shop), made of the conformance
suite's schemas (tests/conformance/) put together:

- customers: two email columns (`email`, `alt_email`) and a custom identity
  (`loyalty_no`), emails stored in mixed case and some padded with spaces, a
  self-reference (`referred_by`) to other customers (test_identities,
  test_reference_cycle);
- orders -> customers (NOT NULL) and -> addresses, an address shared by two
  customers (test_others_one_hop_away);
- order_items with a composite key (order_id, line) -> products (test_keys);
- messages with two references to customers (sender, recipient): rows one hop
  away that are tied to another person, withheld (test_others_one_hop_away);
- memberships, a many-to-many join table with a composite key -> groups
  (test_join_table).

Subject i (1..n) has: 1 customer, 3 orders (the third shipped to the next
customer's address: a shared row), 9 order items (3 products each), 4 messages
sent (2 notes to self, 1 to customer i+1, 1 to customer i+7: withheld) and so 2
received (withheld), 2 memberships. 100,000 subjects make 2,030,000 rows.

Emails: every 10th customer's is in mixed case, every 100th padded with a trailing
space, every 1,000th with a leading one too; every 3rd customer has an alt_email.
Loaded with COPY on PostgreSQL (from tab-separated text files written once) and
multi-row INSERTs on MariaDB."""

from __future__ import annotations

import sqlalchemy as sa

md = sa.MetaData()
customers = sa.Table(
    "customers", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("email", sa.String(120)), sa.Column("alt_email", sa.String(120)),
    sa.Column("loyalty_no", sa.String(20)), sa.Column("name", sa.String(100)),
    sa.Column("referred_by", sa.Integer, sa.ForeignKey("customers.id"), index=True))
addresses = sa.Table(
    "addresses", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("street", sa.String(100)), sa.Column("city", sa.String(60)))
orders = sa.Table(
    "orders", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"), nullable=False,
              index=True),
    sa.Column("address_id", sa.Integer, sa.ForeignKey("addresses.id"), index=True),
    sa.Column("total", sa.Integer), sa.Column("placed_at", sa.DateTime))
products = sa.Table(
    "products", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(100)))
order_items = sa.Table(
    "order_items", md,
    sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.id"), primary_key=True,
              autoincrement=False),
    sa.Column("line", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("product_id", sa.Integer, sa.ForeignKey("products.id"), index=True),
    sa.Column("note", sa.String(100)))
messages = sa.Table(
    "messages", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("sender_id", sa.Integer, sa.ForeignKey("customers.id"), index=True),
    sa.Column("recipient_id", sa.Integer, sa.ForeignKey("customers.id"), index=True),
    sa.Column("body", sa.String(200)))
groups = sa.Table(
    "groups", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("title", sa.String(100)))
memberships = sa.Table(
    "memberships", md,
    sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"), primary_key=True,
              autoincrement=False),
    sa.Column("group_id", sa.Integer, sa.ForeignKey("groups.id"), primary_key=True,
              autoincrement=False, index=True),
    sa.Column("nickname", sa.String(60)))
# Plain indexes on the email columns, as any company has; on PostgreSQL also the
# expression index docs/adding-a-data-source.md asks for (emails are compared as
# LOWER(TRIM(column))). MariaDB 10.11 indexes no expression: there the plain index
# serves, through the column's case-insensitive collation (sql/identity.py).
for _col in ("email", "alt_email"):
    sa.Index(f"ix_customers_{_col}", customers.c[_col])
    sa.Index(f"ix_customers_{_col}_normalised",
             sa.func.lower(sa.func.trim(customers.c[_col]))).ddl_if(dialect="postgresql")

PRODUCTS, GROUPS = 10_000, 20_000

MAP = """
name: foreign_bench
tables:
  customers:
    primary_key: id
    identity: {email: [email, alt_email], loyalty_id: loyalty_no}
    references: [{column: referred_by, to: customers.id}]
    columns:
      id: {category: user.unique_id, erase: retain}
      email: {category: user.contact.email, erase: hash}
      alt_email: user.contact.email
      loyalty_no: user.unique_id
      name: {category: user.name, erase: mask}
    erase: update
    legal_basis: "The pseudonymised customer row keeps the retained orders' link"
  orders:
    primary_key: id
    references:
      - {column: customer_id, to: customers.id}
      - {column: address_id, to: addresses.id}
    columns: {total: user.financial, placed_at: user.behavior.purchase_history}
    erase: retain
    legal_basis: "Invoices kept seven years"
  order_items:
    primary_key: [order_id, line]
    references:
      - {column: order_id, to: orders.id}
      - {column: product_id, to: products.id}
    columns: {note: user.content.private}
    erase: retain
    legal_basis: "Invoices kept seven years"
  products:
    primary_key: id
    columns: {name: system.operations}
    erase: retain
    legal_basis: "The catalogue is not personal data"
  addresses:
    primary_key: id
    columns: {street: user.contact.address.street, city: user.contact.address.city}
    erase: delete
  messages:
    primary_key: id
    references:
      - {column: sender_id, to: customers.id}
      - {column: recipient_id, to: customers.id}
    columns: {body: user.content.private}
    erase: delete
  memberships:
    primary_key: [customer_id, group_id]
    references:
      - {column: customer_id, to: customers.id}
      - {column: group_id, to: groups.id}
    columns: {nickname: user.name}
    erase: delete
  groups:
    primary_key: id
    columns: {title: user.content.public}
    erase: delete
"""


def email(i: int) -> str:
    """Customer i's email as stored (see the module's docstring)."""
    value = f"User{i}@Example.com" if i % 10 == 0 else f"user{i}@example.com"
    if i % 1000 == 0:
        return f" {value} "
    return f"{value} " if i % 100 == 0 else value


def _rows(n: int):
    """{table: generator of tuples}: the rows of an n-subject company."""
    nxt = lambda i, k: (i + k - 1) % n + 1  # noqa: E731 - customer k after i, wrapping
    return {
        "products": ((p, f"Product {p}") for p in range(1, PRODUCTS + 1)),
        "groups": ((g, f"Group {g}") for g in range(1, GROUPS + 1)),
        "customers": ((i, email(i), f"user{i}.alt@example.com" if i % 3 == 0 else None,
                       f"L-{i}", f"Customer {i}", nxt(i, 1) if i % 5 == 0 else None)
                      for i in range(1, n + 1)),
        "addresses": ((i, f"{i} Main St", "Springfield") for i in range(1, n + 1)),
        "orders": ((3 * i - k, i, i if k else nxt(i, 1), 10 + k + i % 90,
                    f"2026-0{1 + k}-{1 + i % 28:02d} 12:00:00")
                   for i in range(1, n + 1) for k in (2, 1, 0)),
        "order_items": ((o, line, (o * 7 + line * 13) % PRODUCTS + 1, f"note {o}-{line}")
                        for o in range(1, 3 * n + 1) for line in (1, 2, 3)),
        "messages": ((4 * i - k, i, (None, None, nxt(i, 1), nxt(i, 7))[k], f"message {i}-{k}")
                     for i in range(1, n + 1) for k in (3, 2, 1, 0)),
        "memberships": ((i, g, f"nick{i}-{j}")
                        for i in range(1, n + 1)
                        for j, g in enumerate(sorted({i % GROUPS + 1, (i * 7) % GROUPS + 1}))),
    }


def write_files(n: int, directory) -> dict[str, tuple]:
    """The rows as tab-separated text files, {table: (path, rows)}."""
    files = {}
    for name, rows in _rows(n).items():
        path, count = directory / f"{name}.tsv", 0
        with open(path, "w", encoding="utf-8") as out:
            for row in rows:
                out.write("\t".join(r"\N" if v is None else str(v) for v in row) + "\n")
                count += 1
        files[name] = (path, count)
    return files


def load_postgresql(dsn: str, files: dict) -> None:
    """COPY every file in (foreign keys' triggers off while loading), then ANALYZE."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn) as conn:
        conn.execute("SET session_replication_role = replica")
        for name, (path, _count) in files.items():
            columns = sql.SQL(", ").join(sql.Identifier(c.name) for c in md.tables[name].c)
            with conn.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(
                    sql.Identifier(name), columns)) as copy, open(path, "rb") as f:
                while block := f.read(1 << 20):
                    copy.write(block)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")


_ANALYZE_MARIADB = ("ANALYZE TABLE customers, addresses, orders, products, order_items, "
                    "messages, `groups`, memberships")


def load_mariadb(url: str, n: int) -> None:
    """Multi-row INSERTs (SQLAlchemy's executemany: PyMySQL sends them as INSERT ...
    VALUES (...), (...), ... of up to 1 MB), 20,000 rows a call, foreign key and
    unique checks off while loading; then ANALYZE TABLE."""
    import itertools

    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("SET foreign_key_checks = 0, unique_checks = 0")
            for name, rows in _rows(n).items():
                table = md.tables[name]
                keys = [c.name for c in table.c]
                while chunk := list(itertools.islice(rows, 20_000)):
                    conn.execute(table.insert(), [dict(zip(keys, row)) for row in chunk])
            conn.exec_driver_sql("SET foreign_key_checks = 1, unique_checks = 1")
        with engine.connect() as conn:
            conn.exec_driver_sql(_ANALYZE_MARIADB)
    finally:
        engine.dispose()
