"""`apikey create NAME …`, `apikey list`, `apikey revoke NAME|PREFIX`: the service's API keys."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core import keys
from core.api import ApiError
from core.identity import SCOPES
from core.models import ApiKey

DURATION = re.compile(r"^(\d+)([mhdw])$")
UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def expiry(text: str) -> datetime:
    """`30d`, `12h`, `90m`, `2w`, or an ISO 8601 moment (UTC unless it says otherwise)."""
    match = DURATION.match(text.strip())
    if match:
        return timezone.now() + timedelta(**{UNITS[match.group(2)]: int(match.group(1))})
    moment = parse_datetime(text.strip())
    if moment is None:
        raise CommandError(f"--expires {text!r}: give a duration (30d, 12h, 90m, 2w) or an ISO 8601 time")
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, dt_timezone.utc)


def names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


class Command(BaseCommand):
    help = "Create, list and revoke API keys."

    def add_arguments(self, parser: CommandParser) -> None:
        verbs = parser.add_subparsers(dest="verb", required=True)
        create = verbs.add_parser("create", help="Create a key and print it (once: it is stored hashed)")
        create.add_argument("name")
        create.add_argument("--scopes", type=names, default=["read", "inference"],
                            help=f"comma-separated, of: {', '.join(SCOPES)} (default: read,inference)")
        create.add_argument("--models", type=names, default=[], help="names or globs it may use (default: all)")
        create.add_argument("--expires", type=expiry, help="30d, 12h, 90m, 2w or an ISO 8601 time (default: never)")
        create.add_argument("--rpm", type=int, help="requests per minute (default: no limit)")
        create.add_argument("--tpm", type=int, help="tokens per minute (default: no limit)")
        verbs.add_parser("list", help="List the keys (their prefixes, never the keys)")
        revoke = verbs.add_parser("revoke", help="Revoke a key by name or prefix; effective within seconds")
        revoke.add_argument("key")

    def handle(self, *args, verb: str, **options) -> None:
        try:
            getattr(self, f"_{verb}")(**options)
        except ApiError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from None

    def _create(self, *, name: str, scopes: list[str], models: list[str], expires: datetime | None,
                rpm: int | None, tpm: int | None, **_) -> None:
        for flag, value in (("--rpm", rpm), ("--tpm", tpm)):
            if value is not None and value < 1:
                raise CommandError(f"{flag}: give a positive number, or leave it out for no limit")
        row, key = keys.create_key(name=name, scopes=scopes, allowed_models=models, expires_at=expires,
                                   requests_per_minute=rpm, tokens_per_minute=tpm)
        self.stderr.write(f"Created key {row.name!r} (prefix {row.prefix}; scopes {','.join(row.scopes)}). "
                          "It is shown this once:")
        self.stdout.write(key)

    def _list(self, **_) -> None:
        self.stdout.write(f"{'PREFIX':<10}{'NAME':<24}{'SCOPES':<32}{'MODELS':<20}{'RPM':>6}{'TPM':>9}  STATE")
        for row in ApiKey.objects.order_by("created"):
            state = "revoked" if row.revoked else "expired" if row.has_expired else (
                f"expires {row.expiry_date:%Y-%m-%d %H:%M}" if row.expiry_date else "active")
            self.stdout.write(f"{row.prefix:<10}{row.name[:23]:<24}{','.join(row.scopes):<32}"
                              f"{','.join(row.allowed_models) or '*':<20}{row.requests_per_minute or '-':>6}"
                              f"{row.tokens_per_minute or '-':>9}  {state}")

    def _revoke(self, *, key: str, **_) -> None:
        row = keys.revoke_key(key=key)
        self.stdout.write(f"Revoked {row.name!r} ({row.prefix}); it stops working within "
                          f"{keys.KEY_CACHE_SECONDS:g} s")
