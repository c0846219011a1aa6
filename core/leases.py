"""Leases in the database: which process performs a duty that must not be done twice at once."""

from __future__ import annotations

from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from core.models import Lease


def hold(*, name: str, holder: str, seconds: float) -> bool:
    """Take or renew the lease `name` for `seconds`; False while another holder's lease runs."""
    now = timezone.now()
    expires = now + timedelta(seconds=seconds)
    if Lease.objects.filter(name=name).filter(Q(holder=holder) | Q(expires_at__lt=now)).update(
            holder=holder, expires_at=expires):
        return True
    try:
        with transaction.atomic():
            Lease.objects.create(name=name, holder=holder, expires_at=expires)
    except IntegrityError:
        return False  # another holder took it first
    return True


def release(*, name: str, holder: str) -> None:
    Lease.objects.filter(name=name, holder=holder).delete()
