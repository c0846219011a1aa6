"""A private PostgreSQL instance (PostgreSQL's own initdb and pg_ctl) that a test may stop and start at will."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from tests.service import free_port


def postgres_bin() -> Path | None:
    """The directory of Debian's PostgreSQL server binaries (the newest installed), if any."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


class PrivatePostgres:
    """initdb into a fresh directory, owned by the `postgres` user (initdb refuses to run as root), listening on a
    free loopback port with trust authentication."""

    def __init__(self):
        self.bin = postgres_bin()
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="llm-manager-pg-"))
        self.data = self.directory / "data"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/llm_manager"

    @staticmethod
    def available() -> bool:
        if postgres_bin() is None:
            return False
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return False
        return os.geteuid() == 0

    def _run(self, *argv: str, timeout: float = 60) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True, timeout=timeout)

    def init(self) -> "PrivatePostgres":
        user = pwd.getpwnam("postgres")
        os.chown(self.directory, user.pw_uid, user.pw_gid)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()
        self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                  "llm_manager")
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l",
                  str(self.directory / "postgres.log"), "-w", "start")

    def stop(self) -> None:
        """A fast shutdown: clients are disconnected at once, as in a restart for an upgrade."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", str(self.bin / "pg_ctl"), "-D", str(self.data), "-m",
                        "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.directory, ignore_errors=True)


def shared_postgres_url() -> str | None:
    """The server of the machine (127.0.0.1:5432, trust authentication) as `postgresql://USER@HOST:PORT`, if it
    answers."""
    try:
        import psycopg
    except ImportError:
        return None
    for user in ("postgres", "root"):
        try:
            with psycopg.connect(f"postgresql://{user}@127.0.0.1:5432/test", connect_timeout=3) as connection:
                connection.execute("SELECT 1")
            return f"postgresql://{user}@127.0.0.1:5432"
        except psycopg.Error:
            continue
    return None


@contextmanager
def scratch_database() -> Iterator[str]:
    """The URL of a new database on the machine's server, dropped afterwards; skips the test if none answers."""
    import pytest

    base = shared_postgres_url()
    if base is None:
        pytest.skip("no PostgreSQL answers on 127.0.0.1:5432")
    import psycopg

    name = f"llm_manager_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{base}/test", autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(f"{base}/test", autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
