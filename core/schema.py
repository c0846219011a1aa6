"""OpenAPI generation: every endpoint documents the contract's envelope unless it declares its own shape."""

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import inline_serializer
from rest_framework import serializers

ENVELOPE = inline_serializer(
    "Envelope",
    {
        "success": serializers.BooleanField(),
        "message": serializers.CharField(),
        "data": serializers.JSONField(),
        "code": serializers.IntegerField(),
        "timestamp": serializers.CharField(help_text="ISO 8601, UTC, with Z"),
    },
)
ERROR = inline_serializer(
    "Error",
    {
        "success": serializers.BooleanField(default=False),
        "message": serializers.CharField(),
        "error": serializers.CharField(help_text="Error code, e.g. VALIDATION_ERROR, TASK_NOT_FOUND"),
        "timestamp": serializers.CharField(),
    },
)


class EnvelopeAutoSchema(AutoSchema):
    """Our API views are plain APIViews with no serializer to guess from: say what they all answer."""

    def get_request_serializer(self):
        return None  # views that read a body declare it with extend_schema(request=…)

    def get_response_serializers(self):
        return {"2XX": ENVELOPE, "4XX": ERROR, "5XX": ERROR}


def close_request_bodies(result, generator, request, public):
    """The API's JSON bodies take only the fields they declare (core.api.validate_body refuses others): the schema
    says so. (The inference routes, which pass unknown fields on to the engine, are declared apart.)"""
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request") and component.get("type") == "object":
            component["additionalProperties"] = False
    return result


NO_NUL = "^[^\\u0000]*$"


def refuse_nul_in_strings(result, generator, request, public):
    """DRF's text fields refuse NUL characters (ProhibitNullCharactersValidator): the schema says so, as a pattern
    on every free-text parameter and body property (runs before the inference paths, whose text may hold NUL)."""

    def mark(schema: dict) -> None:
        if schema.get("type") == "string" and not ({"enum", "format", "pattern"} & set(schema)):
            schema["pattern"] = NO_NUL

    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                mark(parameter.get("schema", {}))
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if not name.endswith("Request"):
            continue  # answers may quote what they refuse, NUL included
        for prop in component.get("properties", {}).values():
            mark(prop)
            mark(prop.get("items", {}))
    return result
