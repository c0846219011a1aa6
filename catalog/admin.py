from django.contrib import admin

from catalog.models import CatalogModel, Favorite, SyncJob


@admin.register(CatalogModel)
class CatalogModelAdmin(admin.ModelAdmin):
    list_display = ("model_id", "source", "model_type", "parameters", "downloads", "likes", "last_synced_at")
    list_filter = ("source", "model_type")
    search_fields = ("model_id", "name", "description")
    readonly_fields = ("added_at",)


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
