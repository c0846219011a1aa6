"""Database access from the thread pool, which keeps its connections between calls (no request cycle closes them)."""

from __future__ import annotations

import functools
import re
from typing import Awaitable, Callable, TypeVar

from asgiref.sync import sync_to_async
from django.db import InterfaceError, OperationalError, connections

# A database that is down, restarting or locked: the same request may succeed a moment later.
DATABASE_ERRORS = (OperationalError, InterfaceError)
# …but SQLite reports a schema that does not match the code as an OperationalError too: that is a defect to
# log with its traceback, not a database to wait for.
_SCHEMA_MISMATCH = re.compile(r"no such (table|column|index)|has no column|syntax error", re.IGNORECASE)


def is_unavailable(exc: BaseException) -> bool:
    """Whether a database error means the database is unavailable (down, restarting, locked) for the moment."""
    return isinstance(exc, DATABASE_ERRORS) and not _SCHEMA_MISMATCH.search(str(exc))

Result = TypeVar("Result")


def _drop_broken_connections() -> None:
    """What CONN_HEALTH_CHECKS does at the start of a request, for this pool thread: a connection the database
    closed (it restarted) is dropped, so this call connects anew instead of failing."""
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None and (connection.errors_occurred or connection.health_check_enabled) \
                and not connection.is_usable():
            connection.close()


def in_thread_pool(function: Callable[..., Result]) -> Callable[..., Awaitable[Result]]:
    """`function` as a coroutine run in the thread pool (not Django's one shared sync thread)."""

    @functools.wraps(function)
    def checked(*args, **kwargs):
        _drop_broken_connections()
        return function(*args, **kwargs)

    return sync_to_async(checked, thread_sensitive=False)
