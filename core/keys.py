"""API keys: creating and revoking them, and finding the caller a presented key stands for.

Keys are hashed by djangorestframework-api-key (SHA-512 of a high-entropy `prefix.secret`); a lookup finds the
row by its prefix and compares hashes in constant time. The proxy's hot path must not read the database on each
request, so what a key stands for is kept in this process for KEY_CACHE_SECONDS: a revocation or an expiry takes
effect everywhere within that time.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import replace
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.api import ApiError, utc_timestamp
from core.audit import audited
from core.identity import SCOPES, Caller
from core.models import ApiKey

KEY_CACHE_SECONDS = 2.0
ENV_KEY_NAME = "LLM_MANAGER_API_KEY"

_callers: dict[bytes, tuple[float, Caller | str]] = {}  # sha256 of a key → (when read, its caller or refusal)
_keys_exist: list[float | bool] = [float("-inf"), False]  # (when read, whether any usable key exists)


class KeyRefused(Exception):
    """The presented key is not one that may be used (unknown, revoked, expired); the message says which."""


def scope_for(path: str, method: str) -> str | None:
    """The scope a request needs; None where no key is needed (health, the console's pages)."""
    if path == "/metrics":
        return None if settings.METRICS_PUBLIC else "metrics"
    if path in ("/health", "/api/health") or not path.startswith(("/api/", "/v1/", "/ws/")):
        return None
    if path.startswith(("/api/keys", "/api/audit")):
        return "admin"
    if path.startswith("/api/metrics/"):  # Prometheus's service discovery: the same key as its scrapes
        return "metrics"
    if path.startswith(("/v1/", "/api/chat/", "/api/completions/", "/api/embeddings/")):
        return "inference"
    if path.startswith("/ws/") or method in ("GET", "HEAD", "OPTIONS"):
        return "read"
    return "manage"


def scope_granted(caller: Caller, scope: str, path: str) -> bool:
    # Listing the models is what every OpenAI client does first: an inference key may, as may a read key.
    if path == "/v1/models" and "read" in caller.scopes:
        return True
    return scope in caller.scopes


def keys_required() -> bool:
    """Whether callers must bring a key: LLM_MANAGER_API_KEY is set, or some usable key was created."""
    required = cached_keys_required()
    if required is None:
        required = ApiKey.objects.filter(revoked=False).exists()
        _keys_exist[:] = [time.monotonic(), required]
    return required


def cached_keys_required() -> bool | None:
    """keys_required() as this process read it lately; None when it must be read again."""
    if settings.API_KEY:
        return True
    read_at, exist = _keys_exist
    return bool(exist) if time.monotonic() - read_at <= KEY_CACHE_SECONDS else None


def cached_caller(key: str, ip: str) -> Caller | None:
    """The caller for `key` if this process looked it up lately (raises KeyRefused for a refused one); None if it
    must be looked up (caller_for_key, which reads the database)."""
    hit = _callers.get(_digest(key))
    if hit is None or time.monotonic() - hit[0] > KEY_CACHE_SECONDS:
        return None
    if isinstance(hit[1], str):
        raise KeyRefused(hit[1])
    return _with_ip(hit[1], ip)


def caller_for_key(key: str, ip: str) -> Caller:
    """The caller `key` stands for: from this process's cache, else read from the database (and kept for
    KEY_CACHE_SECONDS); KeyRefused if none."""
    found: Caller | str | None = cached_caller(key, ip)
    if found is not None:
        return found
    if settings.API_KEY and hmac.compare_digest(key.encode(), settings.API_KEY.encode()):
        found = Caller(name=ENV_KEY_NAME, kind="env-key")
    else:
        found = _stored_key_caller(key)
    _callers[_digest(key)] = (time.monotonic(), found)
    if isinstance(found, str):
        raise KeyRefused(found)
    return _with_ip(found, ip)


def _stored_key_caller(key: str) -> Caller | str:
    prefix, dot, _ = key.partition(".")
    row = ApiKey.objects.filter(prefix=prefix).first() if dot else None
    if row is None or not row.is_valid(key):
        return "Unknown API key"
    if row.revoked:
        return f"The API key {row.name!r} was revoked"
    if row.has_expired:
        return f"The API key {row.name!r} expired at {row.expiry_date:%Y-%m-%d %H:%M:%S} UTC"
    return Caller(name=row.name, kind="key", scopes=frozenset(row.scopes), models=tuple(row.allowed_models),
                  key_id=row.id, requests_per_minute=row.requests_per_minute,
                  tokens_per_minute=row.tokens_per_minute)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _with_ip(found: Caller, ip: str) -> Caller:
    return replace(found, ip=ip)


# --- Services ------------------------------------------------------------------------------------------------


def _check_scopes(scopes: list[str]) -> list[str]:
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ApiError("VALIDATION_ERROR", f"scopes: give one or more of {', '.join(SCOPES)}"
                       + (f" (unknown: {', '.join(unknown)})" if unknown else ""), 400)
    return [scope for scope in SCOPES if scope in scopes]


@audited("key.create", object_of=lambda result: result[0].name)
def create_key(*, name: str, scopes: list[str], allowed_models: list[str] | None = None,
               expires_at: datetime | None = None, requests_per_minute: int | None = None,
               tokens_per_minute: int | None = None) -> tuple[ApiKey, str]:
    """A new key; the key itself is in the answer and nowhere else (it is stored hashed)."""
    if not name.strip():
        raise ApiError("VALIDATION_ERROR", "name: a key needs a name (usage and the audit trail show it)", 400)
    if expires_at is not None and expires_at <= timezone.now():
        raise ApiError("VALIDATION_ERROR", "expires: must be in the future", 400)
    try:
        with transaction.atomic():
            created = ApiKey.objects.create_key(
                name=name.strip(), scopes=_check_scopes(scopes), allowed_models=list(allowed_models or []),
                expiry_date=expires_at, requests_per_minute=requests_per_minute,
                tokens_per_minute=tokens_per_minute)
    except IntegrityError:
        raise ApiError("KEY_EXISTS", f"A usable key named {name!r} exists; revoke it first or choose another name",
                       409) from None
    _keys_exist[0] = float("-inf")  # read again
    return created


@audited("key.revoke", object_of=lambda result: result.name)
def revoke_key(*, key: str) -> ApiKey:
    """Revoke a key, named by its name or its prefix; it stops working within KEY_CACHE_SECONDS everywhere."""
    row = ApiKey.objects.filter(revoked=False, name=key).first() or ApiKey.objects.filter(prefix=key).first()
    if row is None:
        raise ApiError("KEY_NOT_FOUND", f"No API key {key!r}", 404)
    if not row.revoked:
        row.revoked = True
        row.save(update_fields=["revoked"])
    return row


def key_to_dict(row: ApiKey) -> dict:
    return {"prefix": row.prefix, "name": row.name, "scopes": row.scopes,
            "models": row.allowed_models, "requests_per_minute": row.requests_per_minute,
            "tokens_per_minute": row.tokens_per_minute, "created_at": utc_timestamp(row.created),
            "expires_at": utc_timestamp(row.expiry_date) if row.expiry_date else None,
            "revoked": row.revoked, "expired": row.has_expired}
