"""What keeps the service's state true whoever launched it, run by the worker cluster (`qcluster`) itself.

Every second: supervise the engines (promote ready ones, notice crashes and hangs, restart by policy,
rotate logs); every few seconds: queue again the downloads whose job stopped beating. One process at a
time does it, the holder of a lease in the database, so two clusters (or a restarted one beside a dying
one) never restart an engine or re-queue a download twice.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

from django.db import close_old_connections

from core.db import DATABASE_ERRORS
from core.leases import hold, release
from deployments.supervisor import supervise
from downloads.queue import recover_interrupted_downloads

logger = logging.getLogger(__name__)

LEASE = "caretaker"
LEASE_SECONDS = 5.0
SUPERVISE_SECONDS = 1.0
WATCHDOG_SECONDS = 5.0


class Caretaker(threading.Thread):
    def __init__(self):
        super().__init__(name="caretaker", daemon=True)
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stopping = threading.Event()

    def run(self) -> None:
        next_watch = 0.0
        while not self.stopping.wait(SUPERVISE_SECONDS):
            try:
                if not hold(name=LEASE, holder=self.holder, seconds=LEASE_SECONDS):
                    continue  # another cluster takes care
                supervise()
                if time.monotonic() >= next_watch:
                    next_watch = time.monotonic() + WATCHDOG_SECONDS
                    recover_interrupted_downloads()
            except DATABASE_ERRORS as exc:  # the database is busy or briefly gone: next round
                logger.warning("the caretaker's round failed, the database failed: %s; trying again", exc)
            except Exception:
                logger.exception("the caretaker's round failed; trying again")
            finally:
                close_old_connections()

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=SUPERVISE_SECONDS * 3)
        try:
            release(name=LEASE, holder=self.holder)
        except Exception:
            pass  # it lapses on its own
        finally:
            close_old_connections()
