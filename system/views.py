"""System endpoints: liveness in the contract's bare shapes, host figures and the catalog's statistics in the
envelope."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core import __version__, host
from core.api import success, utc_timestamp
from core.metrics import exposition
from system import selectors
from system.metrics import ServiceCollector, engine_targets


class ServiceHealthView(APIView):
    @extend_schema(
        summary="Service liveness (bare shape, never needs a key)",
        responses=inline_serializer(
            "ServiceHealth",
            {"status": serializers.CharField(), "service": serializers.CharField(), "version": serializers.CharField()},
        ),
    )
    def get(self, request):
        return Response({"status": "healthy", "service": settings.SERVICE_NAME, "version": __version__})


class ApiHealthView(APIView):
    @extend_schema(
        summary="API liveness (bare shape, never needs a key)",
        responses=inline_serializer(
            "ApiHealth",
            {
                "status": serializers.CharField(),
                "api_version": serializers.CharField(),
                "service": serializers.CharField(),
            },
        ),
    )
    def get(self, request):
        return Response({"status": "healthy", "api_version": settings.API_VERSION, "service": settings.SERVICE_NAME})


class ResourcesView(APIView):
    @extend_schema(summary="CPU, memory, data-dir disk and NVIDIA GPU figures")
    def get(self, request):
        return success(selectors.resources_with_holders())


class LoadView(APIView):
    @extend_schema(summary="Load averages (absolute and per core), process count, boot time and uptime")
    def get(self, request):
        return success(host.load())


class SystemHealthView(APIView):
    @extend_schema(summary="Overall health with one entry per check (database, workers, disk, memory)")
    def get(self, request):
        return success(host.health())


class StatsView(APIView):
    @extend_schema(summary="Catalog counts, favorites, downloaded models and last sync per source")
    def get(self, request):
        data = selectors.catalog_stats()
        for outcome in data["last_sync"].values():
            if outcome:
                outcome["finished_at"] = utc_timestamp(outcome["finished_at"])
        return success(data)


class MetricsView(APIView):
    """Prometheus's text format, outside the envelope (Prometheus reads it). Needs a key unless
    LLM_MANAGER_METRICS_PUBLIC=true."""

    @extend_schema(summary="Prometheus metrics: HTTP, inference, downloads, deployments, GPUs, the catalog",
                   responses={(200, "text/plain"): OpenApiTypes.STR})
    def get(self, request):
        content, content_type = exposition([ServiceCollector()])
        return HttpResponse(content, content_type=content_type)


class MetricsTargetsView(APIView):
    """Prometheus HTTP service discovery (`http_sd_configs`): a bare JSON list, outside the envelope."""

    @extend_schema(summary="Every running engine's own metrics address, for Prometheus's http_sd_configs",
                   responses={200: inline_serializer("HttpSdTarget", {
                       "targets": serializers.ListField(child=serializers.CharField()),
                       "labels": serializers.DictField(child=serializers.CharField())}, many=True)})
    def get(self, request):
        return JsonResponse(engine_targets(), safe=False)
