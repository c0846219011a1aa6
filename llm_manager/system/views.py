"""System endpoints: liveness in the contract's bare shapes, host figures in the envelope."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from llm_manager import __version__
from llm_manager.api import success
from llm_manager.system import services


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
        return success(services.resources())


class LoadView(APIView):
    @extend_schema(summary="Load averages (absolute and per core), process count, boot time and uptime")
    def get(self, request):
        return success(services.load())


class SystemHealthView(APIView):
    @extend_schema(summary="Overall health with one entry per check (database, workers, disk, memory)")
    def get(self, request):
        return success(services.health())
