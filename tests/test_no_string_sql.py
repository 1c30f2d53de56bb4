"""No SQL is built by string formatting (issue 13, "Bad input"): every identifier
goes through psycopg's `sql.Identifier` / `sql.SQL` or SQLAlchemy's constructs
(which quote it), every value is a bound parameter.

The scan reads the code (ast) of the application (requests_app/, its management
commands and the demo set-up included), the benchmarks (bench/) and the scripts,
and fails naming file:line wherever a statement handed to a database call
(`execute`, `executemany`, `exec_driver_sql`, `mogrify`, `copy`, `sa.text`,
`_copy_out`) is an f-string, a `%` formatting, a `.format()` on a plain string or
a `+` concatenation, or a name assigned one of those in the same function.
psycopg's `sql.SQL(...).format(...)` is composition, not formatting: allowed.

The tests (tests/) are exempt, by decision: they build only fixed literal SQL
(their own schemas, `GRANT`s and `CREATE USER`s for the bad-input cases, with
identifiers quoted by the dialect or psycopg where a name is made up at run time),
never a value of a request; holding them to the rule would turn every fixture's
DDL into composition and prove nothing about the product."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("requests_app", "bench", "scripts")
SQL_CALLS = {"execute", "executemany", "exec_driver_sql", "mogrify", "copy", "text",
             "_copy_out"}


def _formatted(node) -> bool:
    """Whether an expression builds text by formatting: an f-string, `%`, `+`
    (of anything but numbers), or `"...".format(...)` on a plain string."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mod, ast.Add)):
        sides = (node.left, node.right)
        if isinstance(node.op, ast.Mod):
            return isinstance(node.left, (ast.Constant, ast.JoinedStr, ast.BinOp))
        return not all(isinstance(s, ast.Constant) and isinstance(s.value, (int, float))
                       for s in sides)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
            and node.func.attr == "format":
        return isinstance(node.func.value, (ast.Constant, ast.JoinedStr))
    return False


def _call_name(node: ast.Call) -> str:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _offences(tree: ast.AST) -> list[int]:
    """Lines of calls handing SQL built by formatting to a database call."""
    scopes = [n for n in ast.walk(tree)
              if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Module))]
    lines = set()
    for scope in scopes:
        built = {target.id for node in ast.walk(scope) if isinstance(node, ast.Assign)
                 and _formatted(node.value) for target in node.targets
                 if isinstance(target, ast.Name)}
        for node in ast.walk(scope):
            if not isinstance(node, ast.Call) or _call_name(node) not in SQL_CALLS:
                continue
            args = list(node.args)
            if _call_name(node) == "_copy_out":
                args = args[1:2]
            for arg in args[:1]:
                if _formatted(arg) or (isinstance(arg, ast.Name) and arg.id in built):
                    lines.add(node.lineno)
    return sorted(lines)


def _sources():
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path


def test_no_sql_anywhere_is_built_by_string_formatting():
    found = [f"{path.relative_to(ROOT)}:{line}" for path in _sources()
             for line in _offences(ast.parse(path.read_text()))]
    assert found == [], "SQL built by string formatting (use sql.Identifier / SQLAlchemy):\n" \
        + "\n".join(found)


def test_the_scan_finds_each_way_of_formatting_sql_and_allows_composition():
    """The scan itself: it must catch each way, or the test above proves nothing."""
    bad = '''
def f(cursor, conn, name, sa):
    cursor.execute(f"CREATE DATABASE {name}")
    conn.execute("SELECT * FROM %s" % name)
    conn.exec_driver_sql("DROP TABLE {}".format(name))
    conn.execute(sa.text("SELECT " + name))
    query = f"SELECT {name}"
    cursor.execute(query)
'''
    good = '''
def g(cursor, conn, name, sql, sa, table):
    cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
    conn.execute(sa.select(table).where(table.c.id == 1))
    conn.execute(sa.text("SELECT count(*) FROM customers"))
'''
    assert _offences(ast.parse(bad)) == [3, 4, 5, 6, 8]
    assert _offences(ast.parse(good)) == []
