"""Catalog in the console: the stored entries, and a search page over every source with info and
favorites (the same services as /api/models/...). Its download forms post to the downloads admin."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from catalog import selectors, services
from catalog import serializers as shapes
from catalog.models import CatalogModel, DownloadedModel, Favorite, SyncJob
from catalog.sources import SOURCES
from core.admin_actions import console_page, form_error_message, redirect_back
from core.api import ApiError

SOURCE_CHOICES = [("", "All sources")] + [(name, adapter.label) for name, adapter in SOURCES.items()]


class SearchForm(forms.Form):
    query = forms.CharField(required=False, max_length=200)
    source = forms.ChoiceField(required=False, choices=SOURCE_CHOICES)
    model_type = forms.CharField(required=False, max_length=100, label="Type")
    sort = forms.ChoiceField(required=False, choices=[(name, name) for name in selectors.ORDERINGS])
    favorite = forms.BooleanField(required=False, label="Favorites only")
    page = forms.IntegerField(required=False, min_value=1)


class DownloadForm(forms.Form):
    model_id = forms.CharField(max_length=255)
    source = forms.ChoiceField(choices=SOURCE_CHOICES[1:])
    revision = forms.CharField(required=False, max_length=255)
    include = forms.CharField(required=False, max_length=1000,
                              help_text="File patterns, separated by commas or spaces, e.g. *Q4_K_M.gguf")


@admin.register(CatalogModel)
class CatalogModelAdmin(admin.ModelAdmin):
    list_display = ("model_id", "source", "model_type", "parameters", "downloads", "likes", "last_synced_at")
    list_filter = ("source", "model_type")
    search_fields = ("model_id", "name", "description")
    readonly_fields = ("added_at",)

    def get_urls(self):
        own = [
            path("search/", self.admin_site.admin_view(self.search_view), name="catalog_catalogmodel_search"),
            path("model/", self.admin_site.admin_view(self.info_view), name="catalog_catalogmodel_info"),
            path("favorite/", self.admin_site.admin_view(self.favorite_view), name="catalog_catalogmodel_favorite"),
        ]
        return own + super().get_urls()

    def search_view(self, request: HttpRequest) -> HttpResponse:
        form = SearchForm(request.GET or None)
        params = form.cleaned_data if form.is_valid() else {}
        if form.errors:
            messages.error(request, form_error_message(form))
        query, source = params.get("query", ""), params.get("source") or None
        sort, number = params.get("sort") or "downloads", params.get("page") or 1
        page, failed = services.search(query=query, source=source, model_type=params.get("model_type") or None,
                                       sort=sort, favorites_only=params.get("favorite", False), page=number,
                                       page_size=20)
        if failed:
            messages.warning(request, services.offline_message(failed))
        data = page.as_data(lambda model: model)
        pagination = data["pagination"]
        return console_page(request, self.admin_site, "admin/catalog/search.html", "Search models",
                            opts=self.model._meta, form=form, results=shapes.models_to_dicts(data["items"]),
                            pagination=pagination,
                            previous_url=self._page_url(request, number - 1) if pagination["has_prev"] else None,
                            next_url=self._page_url(request, number + 1) if pagination["has_next"] else None)

    @staticmethod
    def _page_url(request: HttpRequest, number: int) -> str:
        query = request.GET.copy()
        query["page"] = str(number)
        return f"?{query.urlencode()}"

    def info_view(self, request: HttpRequest) -> HttpResponse:
        model_id, source = request.GET.get("model_id", ""), request.GET.get("source") or None
        try:
            model, offline = services.model_info(model_id=model_id, source=services.validate_source(source))
        except ApiError as exc:
            messages.error(request, exc.message)
            return redirect("admin:catalog_catalogmodel_search")
        if offline:
            messages.warning(request, services.offline_message([model.source]))
        info = shapes.model_to_dict(model, selectors.favorite_keys([model]), selectors.downloaded_keys([model]),
                                    full=True)
        is_gguf = any(file["path"].endswith(".gguf") for file in info["files"])
        source = SOURCES[model.source]
        form = DownloadForm(initial={"model_id": model.model_id, "source": model.source,
                                     "revision": source.default_revision})
        return console_page(request, self.admin_site, "admin/catalog/model_info.html", info["name"],
                            opts=self.model._meta, info=info, form=form, is_gguf=is_gguf, here=request.get_full_path(),
                            selects_files=source.selects_files)

    @staticmethod
    @require_POST
    def favorite_view(request: HttpRequest) -> HttpResponse:
        model_id, source = request.POST.get("model_id", ""), request.POST.get("source") or None
        try:
            if request.POST.get("favorite") == "remove":
                services.remove_favorite(model_id=model_id, source=services.validate_source(source))
                messages.success(request, f"{model_id} removed from favorites")
            else:
                services.add_favorite(model_id=model_id, source=services.validate_source(source))
                messages.success(request, f"{model_id} is a favorite")
        except ApiError as exc:
            messages.error(request, exc.message)
        return redirect_back(request, reverse("admin:catalog_catalogmodel_search"))


@admin.register(Favorite)
class FavoriteAdmin(admin.ModelAdmin):
    list_display = ("model_id", "source", "created_at")
    list_filter = ("source",)
    search_fields = ("model_id",)


@admin.register(SyncJob)
class SyncJobAdmin(admin.ModelAdmin):
    list_display = ("id", "source", "status", "added", "updated", "failed", "created_at", "finished_at")
    list_filter = ("source", "status")
    search_fields = ("error",)


@admin.register(DownloadedModel)
class DownloadedModelAdmin(admin.ModelAdmin):
    list_display = ("model_id", "source", "revision", "total_bytes", "storage_path", "completed_at")
    list_filter = ("source",)
    search_fields = ("model_id",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # written by completed downloads

    def has_change_permission(self, request: HttpRequest, obj: DownloadedModel | None = None) -> bool:
        return False
