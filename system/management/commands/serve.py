"""`manage.py serve`: migrate, then run the worker cluster and the web server until told to stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection

from core.host import refresh_query_planner_statistics
from downloads.queue import recover_interrupted_downloads

STOP_GRACE_SECONDS = 10
WORKER_RESTART_DELAY_SECONDS = 2


class Command(BaseCommand):
    help = "Apply migrations, start the django-q2 worker cluster and daphne, and stop both on SIGINT/SIGTERM."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=settings.HOST)
        parser.add_argument("--port", type=int, default=settings.PORT)
        parser.add_argument("--no-worker", action="store_true", help="run the web server alone")

    def handle(self, *args, host: str, port: int, no_worker: bool, **options):
        self._check_before_starting(host, port)
        call_command("migrate", interactive=False, verbosity=0)
        refresh_query_planner_statistics()
        # No worker of ours runs yet: every "downloading" task was interrupted.
        recover_interrupted_downloads(everything=True)
        # The processes of an earlier run left their metric files: their counts start again from zero, as
        # prometheus-client's multiprocess mode asks (Prometheus takes a counter's reset in its stride).
        for stale in settings.METRICS_DIR.glob("*.db"):
            stale.unlink(missing_ok=True)
        manage_py = str(Path(settings.BASE_DIR) / "manage.py")
        # daphne's own access lines (plain text, on stdout) would repeat ours, which carry the request id.
        web_argv = [sys.executable, "-m", "daphne", "-v", "0", "-b", host, "-p", str(port),
                    settings.ASGI_APPLICATION.replace(".application", ":application")]
        worker_argv = [sys.executable, manage_py, "qcluster"]

        stopping = False

        def request_stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)

        web = subprocess.Popen(web_argv)
        worker = None if no_worker else subprocess.Popen(worker_argv)
        base = f"http://{host}:{port}"
        self.stdout.write(
            f"LLM Manager is starting on {base}\n"
            f"  API:       {base}/api/\n"
            f"  API docs:  {base}/api/docs/\n"
            f"  Admin:     {base}/admin/\n"
            f"  Data dir:  {settings.DATA_DIR}\n"
            "Press Ctrl-C to stop."
        )
        self.stdout.flush()
        exit_code = 0
        while not stopping:
            time.sleep(0.2)
            if web.poll() is not None:
                self.stderr.write(f"The web server exited with status {web.returncode}; stopping.")
                exit_code = 1
                break
            if worker is not None and worker.poll() is not None:
                # The cluster restarts its own workers; this is the whole cluster gone.
                self.stderr.write(f"The worker cluster exited with status {worker.returncode}; restarting it.")
                time.sleep(WORKER_RESTART_DELAY_SECONDS)
                if not stopping:
                    worker = subprocess.Popen(worker_argv)
        self._stop([p for p in (web, worker) if p is not None])
        self.stdout.write("LLM Manager stopped.")
        sys.exit(exit_code)

    def _check_before_starting(self, host: str, port: int) -> None:
        """A database that does not answer or a port already taken stops the start with one line naming the
        setting, and exit status 2."""
        try:
            connection.ensure_connection()
        except Exception as exc:
            self._refuse("DATABASE_URL", f"the database does not answer ({str(exc).strip().splitlines()[0]})")
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                self._refuse("LLM_MANAGER_PORT", f"{host}:{port} cannot be bound ({exc.strerror})")

    def _refuse(self, setting: str, message: str) -> None:
        self.stderr.write(f"llm-manager: {setting}: {message}")
        sys.exit(2)

    @staticmethod
    def _stop(processes: list[subprocess.Popen]) -> None:
        """SIGTERM each child, SIGKILL what is left after the grace period, grandchildren included."""
        tree: list[psutil.Process] = []
        for process in processes:
            try:
                tree += psutil.Process(process.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                pass
        # Inference engines run in sessions of their own and outlive the service on purpose.
        tree = [child for child in tree if _same_session(child.pid)]
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for process in processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        _, alive = psutil.wait_procs(tree, timeout=max(0.1, deadline - time.monotonic()))
        for leftover in alive:
            leftover.kill()


def _same_session(pid: int) -> bool:
    try:
        return os.getsid(pid) == os.getsid(0)
    except OSError:
        return False
