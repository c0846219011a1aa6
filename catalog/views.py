"""Catalog API views (contract section 2): validate, call the services, shape the answer."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.views import APIView

from catalog import selectors, services
from catalog.models import SyncJob
from llm_manager.api import ApiError, PageQuery, success, utc_timestamp, validate_query

SORTS = list(selectors.ORDERINGS)
SOURCE_CHOICES = list(services.SOURCES)


def _source(request) -> str | None:
    return services.validate_source(request.query_params.get("source"))


class SearchQuery(PageQuery):
    query = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    source = serializers.CharField(required=False, allow_blank=True)
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
        source = _source(request)
        params = validate_query(SearchQuery, request)
        page, failed = services.search(params["query"], source, params["model_type"], params["sort"],
                                       params["favorite"], params["page"], params["page_size"])
        data = page.as_data(lambda model: model)
        data["items"] = selectors.models_to_dicts(data["items"])
        data["offline"] = bool(failed)
        return success(data, services.offline_message(failed) if failed else "OK")


class ModelInfoView(APIView):
    @extend_schema(
        summary="Details of one model; ids may contain `/` and `:`",
        parameters=[OpenApiParameter("source", str, enum=SOURCE_CHOICES, required=False)],
    )
    def get(self, request, model_id: str):
        model, offline = services.model_info(model_id, _source(request))
        favorites, downloaded = selectors.favorite_keys([model]), selectors.downloaded_keys([model])
        data = selectors.model_to_dict(model, favorites, downloaded, full=True)
        data["offline"] = offline
        return success(data, services.offline_message([model.source]) if offline else "OK")


class CategoriesView(APIView):
    @extend_schema(summary="Model types with counts, per source",
                   parameters=[OpenApiParameter("source", str, enum=SOURCE_CHOICES, required=False)])
    def get(self, request):
        return success({"categories": selectors.categories(_source(request))})


class TrendingQuery(serializers.Serializer):
    limit = serializers.IntegerField(required=False, default=10, min_value=1, max_value=50)
    source = serializers.CharField(required=False, allow_blank=True)


class TrendingView(APIView):
    @extend_schema(summary="Trending models: Hugging Face by trending score, Ollama by pulls", parameters=[TrendingQuery])
    def get(self, request):
        source = _source(request)
        limit = validate_query(TrendingQuery, request)["limit"]
        failed = services.refresh_from_sources("", source, None, "trending", max(limit, 20))
        per_source = [
            list(selectors.search(source=name, sort="trending" if name == "huggingface" else "downloads")[:limit])
            for name in services.SOURCES
            if not source or name == source
        ]
        longest = max((len(models) for models in per_source), default=0)
        interleaved = [models[i] for i in range(longest) for models in per_source if i < len(models)]
        items = selectors.models_to_dicts(interleaved[:limit])
        return success({"items": items, "offline": bool(failed)}, services.offline_message(failed) if failed else "OK")


class StatsView(APIView):
    @extend_schema(summary="Catalog counts, favorites, downloaded models and last sync per source")
    def get(self, request):
        data = services.stats()
        for outcome in data["last_sync"].values():
            if outcome:
                outcome["finished_at"] = utc_timestamp(outcome["finished_at"])
        return success(data)


class FavoriteView(APIView):
    @extend_schema(summary="Favorite a model (idempotent)", request=None,
                   parameters=[OpenApiParameter("source", str, enum=SOURCE_CHOICES, required=False)])
    def post(self, request, model_id: str):
        favorite, created = services.add_favorite(model_id, _source(request))
        data = {"model_id": favorite.model_id, "source": favorite.source, "created_at": utc_timestamp(favorite.created_at)}
        return success(data, "Added to favorites" if created else "Already a favorite", 201 if created else 200)

    @extend_schema(summary="Remove a model from the favorites", request=None,
                   parameters=[OpenApiParameter("source", str, enum=SOURCE_CHOICES, required=False)])
    def delete(self, request, model_id: str):
        services.remove_favorite(model_id, _source(request))
        return success({"model_id": model_id}, "Removed from favorites")


class SyncRequest(serializers.Serializer):
    source = serializers.CharField(required=False, allow_blank=True, allow_null=True)
    limit = serializers.IntegerField(required=False, default=100, min_value=1, max_value=10000)


def job_to_dict(job: SyncJob) -> dict:
    return {
        "id": job.id,
        "source": job.source,
        "limit": job.limit,
        "status": job.status,
        "added": job.added,
        "updated": job.updated,
        "failed": job.failed,
        "error": job.error or None,
        "created_at": utc_timestamp(job.created_at),
        "started_at": utc_timestamp(job.started_at) if job.started_at else None,
        "finished_at": utc_timestamp(job.finished_at) if job.finished_at else None,
    }


class SyncView(APIView):
    @extend_schema(summary="Sync the catalog from the sources in the background (one job per source)",
                   request=SyncRequest)
    def post(self, request):
        body = SyncRequest(data=request.data if isinstance(request.data, dict) else {})
        body.is_valid(raise_exception=True)
        source = services.validate_source(body.validated_data.get("source"))
        jobs = services.create_sync_jobs(source, body.validated_data["limit"])
        return success({"id": jobs[0].id, "jobs": [job_to_dict(job) for job in jobs]}, "Sync started", 202)


class SyncJobView(APIView):
    @extend_schema(summary="State and counts of a sync job")
    def get(self, request, job_id: int):
        job = SyncJob.objects.filter(id=job_id).first()
        if job is None:
            raise ApiError("NOT_FOUND", f"No sync job {job_id}", 404)
        return success(job_to_dict(job))
