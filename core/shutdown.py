"""A worker cluster's stop, as its jobs see it: the cluster's master announces it with a marker file named by its
pid; a long job (a download) checks for its own master's marker, saves its progress and ends, so the cluster stops
in seconds instead of waiting for the job to finish."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import psutil
from django.conf import settings


def _marker(master_pid: int) -> Path:
    return settings.DATA_DIR / "run" / f"cluster-{master_pid}.stopping"


def announce_stop(master_pid: int) -> None:
    path = _marker(master_pid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def withdraw_stop(master_pid: int) -> None:
    _marker(master_pid).unlink(missing_ok=True)


@functools.cache
def _my_master() -> int | None:
    """A worker's master: the parent of its parent (django-q2's sentinel sits between them)."""
    try:
        return psutil.Process(os.getppid()).ppid()
    except psutil.Error:
        return None


def cluster_stopping() -> bool:
    master = _my_master()
    return master is not None and _marker(master).exists()
