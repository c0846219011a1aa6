"""API keys and the audit trail in the console.

A key is created here or with `manage.py apikey create`; it is shown once, in the message after saving.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey

from core import audit, keys
from core.admin_actions import service_action
from core.identity import SCOPES
from core.models import ApiKey, AuditEvent

admin.site.unregister(APIKey)  # the library's own model; this project's keys are ApiKey


class CommaSeparatedField(forms.CharField):
    def prepare_value(self, value):
        return ", ".join(value) if isinstance(value, list) else value

    def to_python(self, value) -> list[str]:
        return [part.strip() for part in (value or "").split(",") if part.strip()]


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(choices=[(scope, scope) for scope in SCOPES],
                                       widget=forms.CheckboxSelectMultiple)
    allowed_models = CommaSeparatedField(
        required=False, label="Models", help_text="Names or globs, comma-separated (llama3, qwen*); empty: every model")

    class Meta:
        model = ApiKey
        fields = ("name", "scopes", "allowed_models", "expiry_date", "requests_per_minute", "tokens_per_minute",
                  "revoked")


@admin.register(ApiKey)
class ApiKeyAdmin(APIKeyModelAdmin):
    form = ApiKeyForm
    list_display = ("prefix", "name", "scope_list", "model_list", "requests_per_minute", "tokens_per_minute",
                    "created", "expiry_date", "_has_expired", "revoked")
    list_filter = ("revoked",)
    actions = [service_action("revoke", lambda prefix: keys.revoke_key(key=prefix), "key")]
    audits_itself = True  # key.create/change/revoke (save_model), not the console's generic records

    @admin.display(description="scopes")
    def scope_list(self, row: ApiKey) -> str:
        return ", ".join(row.scopes)

    @admin.display(description="models")
    def model_list(self, row: ApiKey) -> str:
        return ", ".join(row.allowed_models) or "all"

    def get_actions(self, request):
        found = super().get_actions(request)
        found.pop("delete_selected", None)  # revoked, not deleted: the audit trail and usage keep their names
        return found

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj: ApiKey, form, change: bool) -> None:
        was_revoked = change and ApiKey.objects.filter(pk=obj.pk, revoked=True).exists()
        super().save_model(request, obj, form, change)  # a new key is shown once, in a message
        if not change:
            audit.record(action="key.create", object_id=obj.name)
        elif obj.revoked and not was_revoked:
            audit.record(action="key.revoke", object_id=obj.name)
        else:
            audit.record(action="key.change", object_id=obj.name)
        if change:
            messages.info(request, f"Changes reach every process within {keys.KEY_CACHE_SECONDS:g} s.")


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the services write it."""

    list_display = ("at", "actor", "actor_kind", "ip", "action", "object_id", "result")
    list_filter = ("action", "actor_kind", "result")
    search_fields = ("actor", "action", "object_id")
    date_hierarchy = "at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
