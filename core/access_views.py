"""API keys and the audit trail over the API (the `admin` scope)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.views import APIView

from core import keys
from core.api import (
    PageQuery,
    TextField,
    TimeRangeQuery,
    paginate,
    success,
    utc_timestamp,
    validate_body,
    validate_query,
)
from core.identity import SCOPES
from core.models import ApiKey, AuditEvent


class KeyCreateRequest(serializers.Serializer):
    name = TextField(max_length=50)
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=SCOPES), min_length=1, max_length=5)
    models = serializers.ListField(child=TextField(max_length=255), required=False, default=list, max_length=100,
                                   help_text="Model names or globs the key may use; empty: every model")
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    requests_per_minute = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1,
                                                   max_value=10**9)
    tokens_per_minute = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1,
                                                 max_value=10**15)


class KeyListQuery(PageQuery):
    revoked = serializers.BooleanField(required=False, allow_null=True, default=None,
                                       help_text="true: only revoked keys; false: only usable ones; absent: all")


class KeysView(APIView):
    @extend_schema(summary="List API keys (their prefixes; a key itself is never shown again)",
                   parameters=[KeyListQuery])
    def get(self, request):
        query = validate_query(KeyListQuery, request)
        rows = ApiKey.objects.order_by("-created")
        if query.get("revoked") is not None:
            rows = rows.filter(revoked=query["revoked"])
        return success(paginate(rows, query["page"], query["page_size"]).as_data(keys.key_to_dict))

    @extend_schema(summary="Create an API key; the answer's `key` is the only time it is shown",
                   request=KeyCreateRequest)
    def post(self, request):
        body = validate_body(KeyCreateRequest, request)
        row, key = keys.create_key(name=body["name"], scopes=body["scopes"], allowed_models=body["models"],
                                   expires_at=body["expires_at"], requests_per_minute=body["requests_per_minute"],
                                   tokens_per_minute=body["tokens_per_minute"])
        return success({**keys.key_to_dict(row), "key": key}, "API key created; store it now: it is not shown "
                       "again", 201)


class KeyView(APIView):
    @extend_schema(summary="Revoke an API key (by name or prefix); it stops working within seconds")
    def delete(self, request, key: str):
        return success(keys.key_to_dict(keys.revoke_key(key=key)), "API key revoked")


class AuditQuery(PageQuery, TimeRangeQuery):
    actor = TextField(required=False, allow_blank=True, max_length=255, help_text="A key's name, a user's name, or `system`")
    action = TextField(required=False, allow_blank=True, max_length=64, help_text="e.g. download.start, deployment.stop, key.create")
    object = TextField(required=False, allow_blank=True, max_length=512, help_text="The object's id or name")
    result = TextField(required=False, allow_blank=True, max_length=64, help_text="success, or an error code")


def event_to_dict(event: AuditEvent) -> dict:
    return {"id": event.id, "at": utc_timestamp(event.at), "actor": event.actor, "actor_kind": event.actor_kind,
            "ip": event.ip, "action": event.action, "object": event.object_id, "result": event.result,
            "message": event.message}


class AuditView(APIView):
    @extend_schema(summary="The audit trail: state-changing calls through the API, the console and commands, "
                           "newest first", parameters=[AuditQuery])
    def get(self, request):
        query = validate_query(AuditQuery, request)
        events = AuditEvent.objects.all()
        for parameter, lookup in (("actor", "actor"), ("action", "action"), ("object", "object_id"),
                                  ("result", "result"), ("from", "at__gte"), ("to", "at__lt")):
            if query.get(parameter) not in (None, ""):  # blank (or only control characters) filters nothing
                events = events.filter(**{lookup: query[parameter]})
        return success(paginate(events, query["page"], query["page_size"]).as_data(event_to_dict))
