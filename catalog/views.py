"""Catalog API views (contract section 2): validate, call the services, shape the answer."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.views import APIView

from catalog import selectors, services
from catalog import serializers as shapes
from catalog.fields import SourceField
from core.api import ApiError, JsonIntegerField, PageQuery, success, utc_timestamp, validate_body, validate_query

SORTS = list(selectors.ORDERINGS)


class SourceQuery(serializers.Serializer):
    source = SourceField(required=False)


def _source(request) -> str | None:
    return validate_query(SourceQuery, request).get("source")


class SearchQuery(PageQuery):
    query = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    source = SourceField(searchable_only=True, required=False, allow_blank=True)
    model_type = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)
    sort = serializers.ChoiceField(choices=SORTS, required=False, default="downloads")
    favorite = serializers.BooleanField(required=False, default=False)


class SearchView(APIView):
    @extend_schema(
        summary="Search models in the catalog, refreshed from the live sources",
        parameters=[SearchQuery],
        description="`data.offline` is true when a source could not answer in time and the local catalog answered alone.",
    )
    def get(self, request):
        params = validate_query(SearchQuery, request)
        source = params.get("source") or None
        page, failed = services.search(query=params["query"], source=source, model_type=params["model_type"],
                                       sort=params["sort"], favorites_only=params["favorite"], page=params["page"],
                                       page_size=params["page_size"])
        data = page.as_data(lambda model: model)
        data["items"] = shapes.models_to_dicts(data["items"])
        data["offline"] = bool(failed)
        return success(data, services.offline_message(failed) if failed else "OK")


class ModelInfoView(APIView):
    @extend_schema(
        summary="Details of one model; ids may contain `/` and `:`",
        parameters=[SourceQuery],
    )
    def get(self, request, model_id: str):
        model, offline = services.model_info(model_id=model_id, source=_source(request))
        favorites, downloaded = selectors.favorite_keys([model]), selectors.downloaded_keys([model])
        data = shapes.model_to_dict(model, favorites, downloaded, full=True)
        data["offline"] = offline
        return success(data, services.offline_message([model.source]) if offline else "OK")


class CategoriesView(APIView):
    @extend_schema(summary="Model types with counts, per source",
                   parameters=[SourceQuery])
    def get(self, request):
        return success({"categories": selectors.categories(_source(request))})


class TrendingQuery(serializers.Serializer):
    limit = serializers.IntegerField(required=False, default=10, min_value=1, max_value=50)
    source = SourceField(searchable_only=True, required=False, allow_blank=True)


class TrendingView(APIView):
    @extend_schema(summary="Trending models, the sources taking turns: each by its own trending order (Hugging Face "
                           "by trending score, the others by downloads or pulls)", parameters=[TrendingQuery])
    def get(self, request):
        params = validate_query(TrendingQuery, request)
        source, limit = params.get("source") or None, params["limit"]
        failed = services.refresh_from_sources(query="", source=source, model_type=None, sort="trending",
                                               limit=max(limit, 20))
        items = shapes.models_to_dicts(selectors.trending(source=source, limit=limit))
        return success({"items": items, "offline": bool(failed)}, services.offline_message(failed) if failed else "OK")


class FavoriteView(APIView):
    @extend_schema(summary="Favorite a model (idempotent)", request=None,
                   parameters=[SourceQuery])
    def post(self, request, model_id: str):
        favorite, created = services.add_favorite(model_id=model_id, source=_source(request))
        data = {"model_id": favorite.model_id, "source": favorite.source, "created_at": utc_timestamp(favorite.created_at)}
        return success(data, "Added to favorites" if created else "Already a favorite", 201 if created else 200)

    @extend_schema(summary="Remove a model from the favorites", request=None,
                   parameters=[SourceQuery])
    def delete(self, request, model_id: str):
        services.remove_favorite(model_id=model_id, source=_source(request))
        return success({"model_id": model_id}, "Removed from favorites")


class SyncRequest(serializers.Serializer):
    source = SourceField(searchable_only=True, required=False, allow_blank=True, allow_null=True)
    limit = JsonIntegerField(required=False, default=100, min_value=1, max_value=10000)


class SyncView(APIView):
    @extend_schema(summary="Sync the catalog from the sources in the background (one job per source)",
                   request=SyncRequest)
    def post(self, request):
        body = validate_body(SyncRequest, request) if request.body else {"limit": 100}
        jobs = services.create_sync_jobs(source=body.get("source") or None, limit=body["limit"])
        return success({"id": jobs[0].id, "jobs": [shapes.job_to_dict(job) for job in jobs]}, "Sync started", 202)


class SyncJobView(APIView):
    @extend_schema(summary="State and counts of a sync job")
    def get(self, request, job_id: int):
        job = selectors.sync_job(job_id)
        if job is None:
            raise ApiError("NOT_FOUND", f"No sync job {job_id}", 404)
        return success(shapes.job_to_dict(job))
