"""Request fields the apps share that know the sources."""

from __future__ import annotations

from rest_framework import serializers

from catalog.sources import SEARCHABLE, SOURCES
from core.api import ApiError


class SourceField(serializers.ChoiceField):
    """A source's name, declared as an enum in the schema; an unknown one is the contract's INVALID_SOURCE (400)."""

    def __init__(self, *, searchable_only: bool = False, **kwargs):
        super().__init__(choices=list(SEARCHABLE if searchable_only else SOURCES), **kwargs)

    def to_internal_value(self, data):
        if data == "" and self.allow_blank:
            return ""
        if not isinstance(data, str) or data not in self.choices:
            raise ApiError("INVALID_SOURCE", f"Unknown source {data!r}: use one of {', '.join(self.choices)}", 400)
        return data
