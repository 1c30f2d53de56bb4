"""A heartbeat from a thread of its own, for work whose claim must stay fresh while
it runs however long a step takes (a source run's attempt, a package being built):
only work whose process died goes quiet, and only then may another take it over."""

import logging
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.db import DatabaseError, InterfaceError, connection

log = logging.getLogger(__name__)


class Pulse(threading.Thread):
    """Calls `beat` every third of SOURCE_RUN_STALE_SECONDS until stopped, on a
    connection of its own (closed when it stops). `beat` returns False when the
    claim is no longer there to renew: then `lost` is set and the beats end. A beat
    the database refuses (away for a moment) is tried again at the next one. After
    SOURCE_RUN_MAX_SECONDS the work is presumed hung and the beats stop, so that
    another may take it over (its writes are fenced by the claim)."""

    def __init__(self, beat: Callable[[], bool], name: str):
        super().__init__(daemon=True, name=f"pulse-{name}")
        self.beat, self.stopped, self.lost = beat, threading.Event(), threading.Event()
        self.every = settings.SOURCE_RUN_STALE_SECONDS / 3

    def run(self) -> None:
        until = time.monotonic() + settings.SOURCE_RUN_MAX_SECONDS
        try:
            while not self.stopped.wait(self.every) and time.monotonic() < until:
                try:
                    if not self.beat():
                        self.lost.set()
                        return
                except (DatabaseError, InterfaceError) as exc:
                    log.warning("%s failed (%s)", self.name, type(exc).__name__)
                    connection.close()  # the next beat connects afresh
        finally:
            connection.close()

    def stop(self) -> None:
        self.stopped.set()
        self.join()
