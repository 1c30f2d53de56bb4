"""A database's refusal in words, for staff: the connection (wrong port, server
down, wrong password, no such database) or the statement (permission denied on a
table, a table or column gone since the map was saved, a timeout), naming the
table or column where the database names one.

Only names are taken from a database's message, never the message itself: it may
quote a row's values (a DETAIL line, MariaDB's "Duplicate entry '<value>'") or
the DSN's host, user and database. The DSN and its password never appear."""

import re

from sqlalchemy import exc as sa_exc

from requests_app.sources.base import SourceError, TransientSourceError
from requests_app.sources.sql.driver import error_kind, mysql_code

# What a failed connection says, by a phrase of libpq's (PostgreSQL) or PyMySQL's
# message or MariaDB/MySQL's error code: (phrase or code, words, a retry may help).
_CONNECTION = [
    ("password authentication failed", "the server refused the user name or password "
                                       "(check the DSN's credentials)", False),
    (1045, "the server refused the user name or password (check the DSN's credentials)",
     False),
    ("no password supplied", "the server asks for a password and the DSN gives none", False),
    (re.compile(r'role "[^"]*" does not exist'), "the server knows no such user (check the "
                                                 "DSN's user name)", False),
    ("not permitted to log in", "the server does not let this user log in", False),
    ("no pg_hba.conf entry", "the server does not accept connections from this host for "
                             "this user and database", False),
    (re.compile(r'database "[^"]*" does not exist'), "the database the DSN names does not "
                                                     "exist on the server", False),
    (1049, "the database the DSN names does not exist on the server", False),
    (1044, "the server refused this user access to the database the DSN names", False),
    ("connection refused", "the server refused the connection (nothing listens at the "
                           "DSN's host and port: the server is down or the port is wrong)",
     True),
    (2003, "the server refused the connection (nothing listens at the DSN's host and port: "
           "the server is down or the port is wrong)", True),
    ("timeout expired", "the connection timed out (the server did not answer)", True),
    ("timed out", "the connection timed out (the server did not answer)", True),
    ("could not translate host name", "the DSN's host name is not known", True),
    ("name or service not known", "the DSN's host name is not known", True),
    (2005, "the DSN's host name is not known", True),
    (1040, "the server has too many connections", True),
    ("too many clients", "the server has too many connections", True),
]
# The connection lost while a statement ran (libpq's words, MariaDB's client codes).
_LOST = ("server closed the connection", "consuming input failed", "connection is lost",
         "terminating connection")
_CLIENT_CODES = (2002, 2006, 2013, 2055)

# A statement the database refused, by SQLSTATE (PostgreSQL) or error code
# (MariaDB/MySQL): (words, the pattern that finds the table or column's name in
# the message, what the name is).
_PERMISSION = "permission denied"
_TABLE_GONE = "does not exist (dropped or renamed since the map was saved?)"
_STATEMENT = {
    "42501": (_PERMISSION, re.compile(r'permission denied for (?:table|relation) "?([^"\s]+)'),
              "table"),
    1142: (_PERMISSION, re.compile(r"for table [`']?(?:[^`'.]+[`']?\.[`']?)?([^`'.]+)[`']"),
           "table"),
    1143: (_PERMISSION, re.compile(r"for column '([^']+)'"), "column"),
    "42P01": (_TABLE_GONE, re.compile(r'relation "([^"]+)" does not exist'), "table"),
    1146: (_TABLE_GONE, re.compile(r"Table '(?:[^'.]+\.)?([^']+)' doesn't exist"), "table"),
    "42703": ("does not exist (dropped or renamed since the map was saved?)",
              re.compile(r'column "?([^"\s]+)"? does not exist'), "column"),
    1054: ("does not exist (dropped or renamed since the map was saved?)",
           re.compile(r"Unknown column '([^']+)'"), "column"),
    "57014": ("the statement ran longer than the 5 minutes allowed and was stopped", None, ""),
    1969: ("the statement ran longer than the 5 minutes allowed and was stopped", None, ""),
    3024: ("the statement ran longer than the 5 minutes allowed and was stopped", None, ""),
    "55P03": ("a lock held by another session was waited for longer than the 5 s allowed",
              None, ""),
    1205: ("a lock held by another session was waited for longer than the 5 s allowed",
           None, ""),
    "40P01": ("a deadlock with another session (it may pass on a retry)", None, ""),
    1213: ("a deadlock with another session (it may pass on a retry)", None, ""),
    "25006": ("the database is read-only (a replica, or in read-only mode)", None, ""),
    1053: ("the server was shutting down", None, ""),
    1927: ("the connection was killed by an administrator", None, ""),
    1290: ("the server runs in read-only mode", None, ""),
}
_SQLITE = re.compile(r"^no such (table|column): (?:\w+\.)?(\w+)")


def _code(orig) -> str | int | None:
    return mysql_code(orig) or getattr(orig, "sqlstate", None)


def _message(orig) -> str:
    """The database's own message (without PyMySQL's code), to look for names in."""
    if mysql_code(orig) is not None and len(orig.args) > 1:
        return str(orig.args[1])
    return str(orig)


def connection_problem(exc: Exception) -> tuple[str, bool] | None:
    """(words, whether a retry may help) when `exc` is a failure to connect, else None."""
    orig = getattr(exc, "orig", exc)
    code, text = mysql_code(orig), str(orig).lower()
    if code is None and any(phrase in text for phrase in _LOST):
        return "the connection to the server was lost (the server stopped or restarted?)", True
    if code is None and not text.startswith(("connection failed", "connection to server",
                                             "could not connect", "timeout expired")):
        return None
    for pattern, words, transient in _CONNECTION:
        if isinstance(pattern, int):
            hit = pattern == code
        elif code is not None:  # MariaDB/MySQL: by its code only
            continue
        else:
            hit = pattern.search(text) if isinstance(pattern, re.Pattern) else pattern in text
        if hit:
            return words, transient
    if code is None or code in _CLIENT_CODES:
        return "the connection to the server failed", True
    return None


def in_words(exc: Exception) -> str:
    """A database error in words: why the connection or the statement was refused,
    with the table or column the database names (never a value, the DSN or its
    password); for an error it cannot put into words, its type."""
    connection = connection_problem(exc)
    if connection is not None:
        return f"cannot connect to the database: {connection[0]}"
    orig = getattr(exc, "orig", exc)
    known = _STATEMENT.get(_code(orig))
    if known is not None:
        words, pattern, what = known
        match = pattern.search(_message(orig)) if pattern is not None else None
        if match:
            named = f"{what} `{match.group(1)}`"
            return (f"{named}: {words}" if words == _PERMISSION
                    else f"{named} {words}")
        return words
    match = _SQLITE.match(_message(orig))
    if match:
        return f"{match.group(1)} `{match.group(2)}` {_TABLE_GONE}"
    if isinstance(exc, sa_exc.ArgumentError):
        return "the DSN is not a database URL this portal can use"
    return f"database error ({type(exc).__name__})"


def kind_of(exc: Exception) -> type[SourceError] | None:
    """The SourceError a database error becomes (driver.error_kind), except that a
    connection the server refuses for good (a wrong password, no such user or
    database) is not retried: a retry would be refused the same way."""
    kind = error_kind(exc)
    connection = connection_problem(exc) if kind is not None else None
    if connection is not None:
        return TransientSourceError if connection[1] else SourceError
    return kind
