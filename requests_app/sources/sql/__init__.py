"""SQL sources: PostgreSQL or MariaDB/MySQL by DSN, or SQLite (the embedded demo).

The package in layers, each importing only those before it:

    shape      what the dataset map says about its tables (MapShape)
    driver     engines, dialect specifics (session limits, array parameters,
               bounded deletes), COPY out (PostgreSQL),
               reflection and compiled lookups cached per process, errors
    traversal  following references from the identity rows outwards
    identity   identity verification against the identity table
    actions    what erasure does to a value: mask, keyed hash
    gathering  the person's rows written to a sink, big leaves copied
    erasure    planning, executing and checking erasure batches
    connector  SqlConnector, which ties them to a source

The names below are re-exported for `from requests_app.sources.sql import ...`.
They are copies: to change a setting (BATCH, LEAF_BATCH, ...) or a cache, set it
on the module that defines it (driver, erasure), which is where it is read.
"""

from requests_app.sources.sql.actions import keyed_hash, mask
from requests_app.sources.sql.connector import SqlConnector
from requests_app.sources.sql.driver import ARRAY_BATCH, BATCH, engine_url, forget
from requests_app.sources.sql.erasure import ERASE_BATCH, LEAF_BATCH, PROGRESS_EVERY
from requests_app.sources.sql.traversal import Traversal

__all__ = ["ARRAY_BATCH", "BATCH", "ERASE_BATCH", "LEAF_BATCH", "PROGRESS_EVERY", "SqlConnector",
           "Traversal", "engine_url", "forget", "keyed_hash", "mask"]
