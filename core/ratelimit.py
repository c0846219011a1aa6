"""Requests and tokens per key per minute, counted where every process (and node) sees the same figure: Redis
when REDIS_URL is set, else the database. One backend, chosen once from the settings.

Fixed windows of one calendar minute: a key over its limit is refused until the minute ends, and told so in
Retry-After.
"""

from __future__ import annotations

import time
from functools import cache

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F

from core.models import RateWindow

FIGURES = ("requests", "tokens")


class RateCounter:
    """The contract of a counting backend."""

    def add(self, key_id: str, figure: str, amount: int) -> int:
        """Add `amount` to this minute's `figure` of the key; the new total."""
        raise NotImplementedError

    def used(self, key_id: str, figure: str) -> int:
        raise NotImplementedError


class DatabaseRateCounter(RateCounter):
    def add(self, key_id: str, figure: str, amount: int) -> int:
        minute = current_minute()
        window = RateWindow.objects.filter(key_id=key_id, minute=minute)
        if not window.update(**{figure: F(figure) + amount}):
            try:
                with transaction.atomic():
                    RateWindow.objects.create(key_id=key_id, minute=minute, **{figure: amount})
                RateWindow.objects.filter(key_id=key_id, minute__lt=minute).delete()  # spent windows
            except IntegrityError:  # another process made it first
                window.update(**{figure: F(figure) + amount})
        return window.values_list(figure, flat=True).first() or 0  # this minute's, even if the clock moved on

    def used(self, key_id: str, figure: str) -> int:
        return RateWindow.objects.filter(key_id=key_id, minute=current_minute()).values_list(figure, flat=True) \
            .first() or 0


class RedisRateCounter(RateCounter):
    def __init__(self, url: str):
        import redis

        self.redis = redis.Redis.from_url(url)

    def add(self, key_id: str, figure: str, amount: int) -> int:
        name = self._name(key_id, figure)
        pipeline = self.redis.pipeline()
        pipeline.incrby(name, amount)
        pipeline.expire(name, 120)
        return int(pipeline.execute()[0])

    def used(self, key_id: str, figure: str) -> int:
        return int(self.redis.get(self._name(key_id, figure)) or 0)

    @staticmethod
    def _name(key_id: str, figure: str) -> str:
        return f"llm_manager:rate:{key_id}:{current_minute()}:{figure}"


@cache
def counter() -> RateCounter:
    return RedisRateCounter(settings.REDIS_URL) if settings.REDIS_URL else DatabaseRateCounter()


def current_minute() -> int:
    return int(time.time() // 60)


def seconds_left_in_minute() -> int:
    return max(1, 60 - int(time.time() % 60))
