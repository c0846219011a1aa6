"""Runs the real service (`manage.py serve` or the README's start script) as a subprocess for tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

REPO_ROOT = Path(__file__).resolve().parent.parent


MANAGE = [sys.executable, str(REPO_ROOT / "manage.py")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def metric(client: httpx.Client, name: str, **labels: str) -> float:
    """A sample's value on the service's /metrics (the client's base URL), 0 where it has none yet."""
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def wait_for(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Service:
    """One running instance of LLM Manager on a free loopback port with its own data dir."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, args: list[str] | None = None,
                 argv: list[str] | None = None):
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / "service-stdout.log"
        self.env = {
            **os.environ,
            "LLM_MANAGER_DATA_DIR": str(data_dir),
            "LLM_MANAGER_PORT": str(self.port),
            "LLM_MANAGER_HOST": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.argv = (argv or [sys.executable, str(REPO_ROOT / "manage.py"), "serve"]) + (args or [])
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> "Service":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.argv, cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_for(self._answers, timeout, what=f"{self.url}/health (log: {self.log_path})")
        return self

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"the service exited with {self.process.returncode}:\n{self.log()}")
        try:
            return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, **{"timeout": 30, **kwargs})

    def manage(self, *args: str, check: bool = False, stdin: str = "", **env: str) -> subprocess.CompletedProcess:
        """`manage.py ARGS` with this service's environment (its data dir and database), as an operator runs it."""
        return subprocess.run([*MANAGE, *args], cwd=REPO_ROOT, env={**self.env, **env}, input=stdin,
                              capture_output=True, text=True, check=check, timeout=120)

    def create_key(self, name: str, *flags: str) -> str:
        """A new API key, made with `apikey create` (which prints it, once)."""
        return self.manage("apikey", "create", name, *flags, check=True).stdout.strip()

    @contextmanager
    def console_client(self, username: str, password: str) -> Iterator[httpx.Client]:
        """A client signed in to the console as a staff user made with `createsuperuser`."""
        self.manage("createsuperuser", "--noinput", "--email", f"{username}@example.com",
                    DJANGO_SUPERUSER_USERNAME=username, DJANGO_SUPERUSER_PASSWORD=password)
        with self.client(follow_redirects=False) as client:
            client.get("/admin/login/")
            answer = client.post("/admin/login/", data={"username": username, "password": password,
                                                        "next": "/admin/",
                                                        "csrfmiddlewaretoken": client.cookies["csrftoken"]})
            assert answer.status_code == 302, answer.text[:500]
            yield client

    def stop(self, timeout: float = 30) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


class SplitService:
    """The service the usual Django way: `migrate`, then `qcluster` and `daphne` as processes of their own (as
    systemd units or containers run it), each of which may be killed and started again."""

    def __init__(self, data_dir: Path, env: dict):
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env, "LLM_MANAGER_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
        self.clusters: list[subprocess.Popen] = []
        self.webs: list[subprocess.Popen] = []

    def start(self) -> "SplitService":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run([*MANAGE, "migrate", "--noinput", "-v", "0"], env=self.env, check=True, timeout=120)
        self.start_cluster()
        self.start_web()
        return self

    def start_cluster(self) -> subprocess.Popen:
        cluster = self._spawn([*MANAGE, "qcluster"], f"qcluster{len(self.clusters)}")
        self.clusters.append(cluster)
        return cluster

    def start_web(self) -> subprocess.Popen:
        web = self._spawn([sys.executable, "-m", "daphne", "-v", "0", "-b", "127.0.0.1", "-p", str(self.port),
                           "llm_manager.asgi:application"], f"daphne{len(self.webs)}")
        self.webs.append(web)
        wait_for(self._answers, 60, what="daphne")
        return web

    @staticmethod
    def kill(process: subprocess.Popen) -> None:
        """SIGKILL the process and everything under it, as the kernel's OOM killer or a power cut would."""
        tree = [*psutil.Process(process.pid).children(recursive=True), psutil.Process(process.pid)]
        for member in tree:
            try:
                member.kill()
            except psutil.NoSuchProcess:
                pass
        process.wait(timeout=10)

    def _spawn(self, argv: list[str], name: str) -> subprocess.Popen:
        with open(self.data_dir / f"{name}.log", "ab") as log:
            return subprocess.Popen(argv, cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def _answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)

    def logs(self) -> str:
        return "".join(path.read_text(errors="replace") for path in sorted(self.data_dir.glob("*.log")))

    def stop(self) -> None:
        for process in [*self.clusters, *self.webs]:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
