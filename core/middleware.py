"""The base of the project's middlewares: sync or async, as the stack around them is."""

from __future__ import annotations

from typing import Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest


class HybridMiddleware:
    """A middleware Django runs in either stack without an adapter: `__call__` handles a sync request and hands an
    async one to `__acall__` (the subclass's `acall`)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if iscoroutinefunction(self):
            return self.acall(request)
        return self.call(request)

    def call(self, request: HttpRequest):
        raise NotImplementedError

    async def acall(self, request: HttpRequest):
        raise NotImplementedError
