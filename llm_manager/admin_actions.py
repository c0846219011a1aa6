"""Console helpers: admin bulk actions that call a service per selected object, and messages."""

from __future__ import annotations

from typing import Callable

from django.contrib import messages

from llm_manager.api import ApiError


def service_action(name: str, operation: Callable[[str], object], noun: str, description: str = ""):
    """An admin action named `name` that calls `operation(pk)` for each selected row."""

    def run(modeladmin, request, queryset):
        done = 0
        for obj in queryset:
            try:
                operation(obj.pk)
                done += 1
            except ApiError as exc:
                modeladmin.message_user(request, f"{obj.pk}: {exc.message}", messages.WARNING)
        modeladmin.message_user(request, f"{name}: {done} {noun}(s)")

    # "delete" becomes `delete_selected`, in place of the admin's own deletion, which skips the service.
    run.__name__ = f"{name.replace(' ', '_')}_selected"
    run.short_description = description or f"{name.title()} selected {noun}s"
    return run


def form_error_message(form) -> str:
    """A Django form's errors as one line for a console message."""
    return "; ".join(f"{field}: {' '.join(errors)}" for field, errors in form.errors.items())
