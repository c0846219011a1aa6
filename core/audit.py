"""The audit trail: every state-changing service call, whoever made it (a key, an operator in the console, a
command), recorded once with its outcome.

Services are where the API, the console and the commands meet, so recording there catches all three with one
decorator; the caller comes from core.identity. A service that calls another audited one (deleting a
deployment stops it first) leaves one record, the outer one's. The console's generic add, change and delete forms
(which call no service) are recorded where the admin logs them (core.admin_actions.ConsoleAudit).
"""

from __future__ import annotations

import functools
import logging
from contextvars import ContextVar
from typing import Any, Callable

from core.api import ApiError
from core.db import DATABASE_ERRORS
from core.identity import caller
from core.models import AuditEvent

logger = logging.getLogger(__name__)
_inside_audited: ContextVar[bool] = ContextVar("inside_audited", default=False)


def audited(action: str | Callable[[dict], str], *, target: str = "",
            object_of: Callable[[Any], str] | None = None):
    """Record each call of a keyword-only service: `action` (or `action(kwargs)`), the object named by the
    keyword argument `target` (or `object_of(result)` once it succeeded), and `success` or the error's code."""

    def decorate(service: Callable) -> Callable:
        @functools.wraps(service)
        def run(**kwargs):
            if _inside_audited.get():
                return service(**kwargs)
            token = _inside_audited.set(True)
            name = action(kwargs) if callable(action) else action
            object_id = str(kwargs.get(target, "")) if target else ""
            try:
                result = service(**kwargs)
            except ApiError as exc:
                record(action=name, object_id=object_id, result=exc.code, message=exc.message)
                raise
            except Exception as exc:
                record(action=name, object_id=object_id, result="INTERNAL_ERROR", message=type(exc).__name__)
                raise
            finally:
                _inside_audited.reset(token)
            record(action=name, object_id=object_of(result) if object_of else object_id, result="success")
            return result

        return run

    return decorate


def record(*, action: str, object_id: str = "", result: str = "success", message: str = "") -> None:
    """Write one audit record for the current caller. A database that cannot take it does not undo the action;
    the record is logged instead."""
    who = caller()
    try:
        AuditEvent.objects.create(actor=who.name[:255], actor_kind=who.kind, ip=who.ip[:64], action=action,
                                  object_id=object_id[:512], result=result, message=message[:2000])
    except DATABASE_ERRORS:
        logger.warning("audit record not written: %s by %s on %s: %s", action, who.name, object_id, result)


def record_console(*, model: type, pk: object, verb: str, message: str) -> None:
    """An object added, changed or deleted through a console form that calls no service: `console.VERB` on
    `app.model/pk` (core.admin_actions.ConsoleAudit)."""
    meta = model._meta
    record(action=f"console.{verb}", object_id=f"{meta.app_label}.{meta.model_name}/{pk}", message=message)
