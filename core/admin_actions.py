"""Console helpers shared by the apps' admins: bulk actions and row buttons that call a service,
pages in the admin's frame, and refusals as messages."""

from __future__ import annotations

from typing import Callable, Iterable

from django.contrib import messages
from django.contrib.admin.models import LogEntry
from django.db.models import Model
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from core.api import ApiError
from core.audit import record_console


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


def row_action_view(operations: dict[str, Callable[[str], object]], changelist: str):
    """An admin view `(request, pk, action)` that calls `operations[action](pk)`, then goes back to the
    `changelist` URL name with what happened as a message."""

    @require_POST
    def view(request: HttpRequest, pk: str, action: str) -> HttpResponse:
        try:
            if action not in operations:
                raise ApiError("INVALID_ACTION", f"Unknown action {action}", 400)
            operations[action](pk)
            messages.success(request, f"{pk}: {action} done")
        except ApiError as exc:
            messages.error(request, f"{pk}: {exc.message}")
        return HttpResponseRedirect(reverse(changelist))

    return view


def row_buttons(url_name: str, pk: str, actions: list[str], enabled: Callable[[str], bool] = lambda action: True,
                extra: str = "") -> str:
    """A change-list row's action buttons. They belong to the change list's own form (it carries the CSRF
    token) and each posts to `url_name` with (pk, action)."""
    buttons = format_html_join(
        "", '<button type="submit" formmethod="post" formaction="{}" data-action="{}" data-row="{}"{}>{}</button>',
        ((reverse(url_name, args=[pk, action]), action, pk, "" if enabled(action) else " disabled", action.title())
         for action in actions))
    return format_html('<span class="console-actions">{}{}</span>', buttons, extra)


def console_page(request: HttpRequest, site, template: str, title: str, **context) -> TemplateResponse:
    """A page of the console, inside the admin's frame (header, navigation, messages)."""
    return TemplateResponse(request, template, {**site.each_context(request), "title": title, **context})


def redirect_back(request: HttpRequest, fallback: str) -> HttpResponseRedirect:
    """Back to the page a form was posted from (its `next` field), if it is one of ours."""
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = fallback
    return HttpResponseRedirect(target or fallback)


class ConsoleAudit:
    """A ModelAdmin's generic forms recorded in the audit trail where the admin logs them: additions and changes
    (the change form and the list's editable fields) and deletions (the delete page and "Delete selected"). The
    console's site mixes it into every model's admin (system.console.ConsoleAdminSite.register) but those that
    say `audits_itself`."""

    def log_addition(self, request: HttpRequest, obj: Model, message: object) -> LogEntry:
        entry = super().log_addition(request, obj, message)
        record_console(model=type(obj), pk=obj.pk, verb="add", message=f"{obj}: {entry.get_change_message()}")
        return entry

    def log_change(self, request: HttpRequest, obj: Model, message: object) -> LogEntry:
        entry = super().log_change(request, obj, message)
        record_console(model=type(obj), pk=obj.pk, verb="change", message=f"{obj}: {entry.get_change_message()}")
        return entry

    def log_deletions(self, request: HttpRequest, queryset: Iterable[Model]) -> object:
        entries = super().log_deletions(request, queryset)  # called before the deletion, so pk is still there
        for obj in queryset:
            record_console(model=type(obj), pk=obj.pk, verb="delete", message=str(obj))
        return entries
