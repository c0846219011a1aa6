"""Who is calling: a key, a signed-in operator, a command, or the service itself.

Set once per request by core.auth (and per command by llm_manager.cli); read by the audit trail, the usage
buckets and the limits. A context variable rather than an argument: services called from a view, an admin
action or a command all see the caller without each layer passing it on.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from fnmatch import fnmatchcase

# What a key may be allowed to do (issue: read = GETs, inference = chat/completions/embeddings and /v1,
# manage = everything else that changes state, metrics = /metrics, admin = keys and the audit trail).
SCOPES = ("read", "inference", "manage", "metrics", "admin")


@dataclass(frozen=True)
class Caller:
    name: str
    kind: str  # key | env-key | user | anonymous | command | system
    ip: str = ""
    scopes: frozenset[str] = frozenset(SCOPES)
    models: tuple[str, ...] = ()  # names or globs; none: every model
    key_id: str = ""
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None

    @property
    def key_name(self) -> str:
        """The name usage is counted under: a key's name, else empty (an operator's or an open service's calls)."""
        return self.name if self.kind in ("key", "env-key") else ""

    def may_use_model(self, *names: str) -> bool:
        """Whether any of a model's names (its id, a deployment's name or id) is one this caller may use."""
        if not self.models:
            return True
        return any(fnmatchcase(name, pattern) for name in names if name for pattern in self.models)


SYSTEM = Caller(name="system", kind="system")
current_caller: ContextVar[Caller] = ContextVar("current_caller", default=SYSTEM)


def caller() -> Caller:
    return current_caller.get()
