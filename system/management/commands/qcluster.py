"""`qcluster`: django-q2's worker cluster, plus what makes it a whole service role on its own.

- The caretaker (system.caretaker) supervises engines and re-queues interrupted downloads from inside the
  cluster, so recovery does not depend on how the service was launched (serve, systemd units, containers).
- SIGTERM or SIGINT stops it within STOP_SECONDS: the running downloads are told to save their progress and
  end (they are queued again and resume on the next start), then the cluster stops; whatever is left after the
  grace period is killed. Engines run on: the next start adopts them.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil
from django.conf import settings
from django.db import close_old_connections
from django_q.cluster import Cluster
from django_q.management.commands.qcluster import Command as DjangoQCommand

from core.shutdown import announce_stop, withdraw_stop
from system.caretaker import Caretaker

STOP_SECONDS = 8.0


class Command(DjangoQCommand):
    help = "Start the worker cluster with its caretaker (engine supervision, download recovery)."

    def handle(self, *args, **options):
        settings.SECRET_KEY  # as django-q2's own command: signing needs it
        if options.get("cluster_name"):
            os.environ["Q_CLUSTER_NAME"] = options["cluster_name"]
        master = os.getpid()
        withdraw_stop(master)  # a pid may be reused; an old marker must not stop this cluster
        caretaker = Caretaker()
        cluster = Cluster()  # it takes SIGTERM and SIGINT itself; we take them back below

        def stop(signum, frame):
            announce_stop(master)
            threading.Thread(target=_kill_after_grace, args=(master,), daemon=True).start()
            caretaker.stop()
            cluster.sig_handler(signum, frame)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        caretaker.start()
        try:
            cluster.start()
            if options.get("run_once", False):
                cluster.stop()
            while cluster.sentinel.is_alive():  # signals are handled here, in the main thread
                cluster.sentinel.join(0.5)
        finally:
            caretaker.stop()
            withdraw_stop(master)
            close_old_connections()


def _kill_after_grace(master: int) -> None:
    """Past the grace period, nothing of this cluster is left running (its engines aside)."""
    time.sleep(STOP_SECONDS)  # a daemon thread: if the cluster stops first, the process ends with it
    session = os.getsid(master)
    for process in psutil.Process(master).children(recursive=True):
        try:
            if os.getsid(process.pid) == session:  # engines run in sessions of their own, and on
                process.kill()
        except (psutil.Error, OSError):
            pass
    withdraw_stop(master)
    os._exit(0)
