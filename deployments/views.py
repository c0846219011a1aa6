"""Deployment API views (contract section 4)."""

from __future__ import annotations

import re

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.views import APIView

from catalog.fields import SourceField
from core.api import (
    JsonBooleanField,
    JsonFloatField,
    JsonIntegerField,
    TextField,
    success,
    validate_body,
    validate_query,
)
from deployments import selectors, services, supervisor
from deployments import serializers as shapes
from deployments.engines import ENGINES
from deployments.models import DeploymentStatus, DeploymentTask, RestartPolicy


class DeploymentStartRequest(serializers.Serializer):
    model_id = TextField(max_length=255)
    model_source = SourceField()
    port = JsonIntegerField(required=False, allow_null=True, min_value=1, max_value=65535)
    gpu_memory_utilization = JsonFloatField(required=False, default=0.9, min_value=0.01, max_value=1)
    # At most what the column holds on every database (PostgreSQL's integer).
    max_model_len = JsonIntegerField(required=False, allow_null=True, min_value=1, max_value=2**31 - 1)
    engine = serializers.ChoiceField(choices=sorted(ENGINES), required=False, allow_null=True)
    name = TextField(required=False, allow_blank=True, max_length=255, default="")
    restart_policy = serializers.ChoiceField(choices=RestartPolicy.choices, required=False,
                                             default=RestartPolicy.ON_FAILURE)
    tensor_parallel_size = JsonIntegerField(required=False, default=1, min_value=1, max_value=64)
    pipeline_parallel_size = JsonIntegerField(
        required=False, default=1, min_value=1, max_value=64,
        help_text="vLLM: pipeline stages; it takes tensor_parallel_size × this GPUs, across nodes on a cluster when "
                  "no node has that many (vLLM's Ray executor)")
    engine_args = serializers.ListField(
        child=TextField(max_length=4096), required=False, default=list, max_length=200,
        help_text='Extra engine flags, passed after the service\'s own, e.g. ["--n_gpu_layers", "20"]; flags the '
                  "engine's entry in GET /api/engines lists as owned are refused")
    env = serializers.DictField(child=TextField(max_length=65536, allow_blank=True), required=False,
                                default=dict, help_text="Extra environment variables of the engine (string values)")
    force = JsonBooleanField(required=False, default=False)
    gpu_ids = serializers.ListField(child=JsonIntegerField(min_value=0, max_value=1023), required=False,
                                    allow_null=True, min_length=1, max_length=64,
                                    help_text="The GPUs to start on (their NVML indexes); default: chosen by free "
                                              "memory")
    node = TextField(required=False, allow_null=True, max_length=255,
                     help_text="On a cluster: the node (its name, GET /api/nodes) to start on; default: the node "
                               "with the most free GPUs")
    gpu_count = JsonIntegerField(required=False, allow_null=True, min_value=0, max_value=64,
                                 help_text="How many GPUs, chosen by free memory (default: tensor_parallel_size for "
                                           "vLLM, one for llama.cpp where there is a GPU, none for a CPU engine)")
    idle_timeout = JsonIntegerField(required=False, allow_null=True, min_value=10, max_value=2**31 - 1,
                                    help_text="Seconds without a request after which the deployment stops (reason "
                                              "idle); the next call loads it again. Default: LLM_MANAGER_IDLE_TIMEOUT")
    task = serializers.ChoiceField(choices=DeploymentTask.choices, required=False, default=DeploymentTask.GENERATE,
                                   help_text="embed: the engine serves /v1/embeddings (llama.cpp, vLLM)")
    file = TextField(required=False, allow_blank=True, max_length=1024, default="",
                     help_text="Of a repository with several GGUF models, the one to deploy (its path; any shard of "
                               "a split model)")
    quantization = TextField(required=False, allow_blank=True, max_length=32, default="",
                             help_text="Of a repository with several GGUF models, the quantization to deploy (e.g. "
                                       "Q4_K_M). Without `file` or this: Q4_K_M, Q5_K_M, Q4_K_S, Q5_K_S, Q6_K, Q8_0, "
                                       "Q4_0… in that order; never a projector (mmproj)")

    def validate_env(self, value: dict) -> dict:
        for name in value:
            if not ENV_NAME.fullmatch(name):
                raise serializers.ValidationError(f"{name!r} is not a variable name")
        return value


ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,255}$")


class StartView(APIView):
    @extend_schema(summary="Start a deployment of a downloaded model on an inference engine", request=DeploymentStartRequest)
    def post(self, request):
        deployment = services.start_deployment(**validate_body(DeploymentStartRequest, request))
        shown = shapes.deployment_to_dict(deployment)
        return success({key: shown[key] for key in ("deployment_id", "model_id", "status", "host", "port",
                                                    "created_at", "engine", "name", "pid")}, "Deployment starting")


class ListQuery(serializers.Serializer):
    status = serializers.ChoiceField(choices=DeploymentStatus.choices, required=False)


class ListView(APIView):
    @extend_schema(summary="List deployments", parameters=[ListQuery])
    def get(self, request):
        query = validate_query(ListQuery, request)
        items = [shapes.deployment_to_dict(d) for d in selectors.deployment_list(query.get("status"))]
        return success({"items": items, "total": len(items)})


class DetailView(APIView):
    @extend_schema(summary="A deployment's state")
    def get(self, request, deployment_id: str):
        return success(shapes.deployment_to_dict(selectors.get_deployment(deployment_id)))

    @extend_schema(summary="Delete a deployment (stopping it first); logs are kept unless delete_logs=true",
                   parameters=[OpenApiParameter("delete_logs", bool, required=False)])
    def delete(self, request, deployment_id: str):
        delete_logs = request.query_params.get("delete_logs", "false").lower() in ("1", "true", "yes")
        return success(services.delete_deployment(deployment_id=deployment_id, delete_logs=delete_logs),
                       "Deployment deleted")


class StopView(APIView):
    @extend_schema(summary="Stop a deployment: SIGTERM to its process group, SIGKILL after the grace period",
                   request=None)
    def put(self, request, deployment_id: str):
        return success(shapes.deployment_to_dict(services.stop_deployment(deployment_id=deployment_id)),
                       "Deployment stopped")


class RestartView(APIView):
    @extend_schema(summary="Restart a deployment with the same id and settings", request=None)
    def put(self, request, deployment_id: str):
        return success(shapes.deployment_to_dict(services.restart_deployment(deployment_id=deployment_id)),
                       "Deployment restarting")


class LogsQuery(serializers.Serializer):
    lines = serializers.IntegerField(required=False, default=100, min_value=1, max_value=10000)


class LogsView(APIView):
    @extend_schema(summary="The last lines of the engine's log", parameters=[LogsQuery])
    def get(self, request, deployment_id: str):
        lines = validate_query(LogsQuery, request)["lines"]
        deployment = selectors.get_deployment(deployment_id)
        found = supervisor.log_lines(deployment, lines)
        return success({"deployment_id": deployment.id, "lines": found, "count": len(found)})


class HealthView(APIView):
    @extend_schema(summary="Process alive, probe result and latency, uptime, restarts")
    def get(self, request, deployment_id: str):
        return success(supervisor.health(selectors.get_deployment(deployment_id)))


class ModelInfoView(APIView):
    @extend_schema(summary="The engine's /v1/models answer plus what we know of the model")
    def get(self, request, deployment_id: str):
        return success(services.model_info(deployment=selectors.get_deployment(deployment_id)))


class EnginesView(APIView):
    @extend_schema(summary="The inference engines: whether each can run here (or what to install), its version, the "
                           "flags the service sets itself and flags operators often pass")
    def get(self, request):
        return success({"items": [shapes.engine_to_dict(engine) for engine in ENGINES.values()]})


class NodesView(APIView):
    @extend_schema(summary="The nodes engines run on: a cluster's Ray nodes, or this machine alone")
    def get(self, request):
        found = supervisor.host().nodes()
        return success({"nodes": found, "count": len(found)})


class NodeView(APIView):
    @extend_schema(summary="One node: address, liveness, GPUs and which deployment holds which, deployments")
    def get(self, request, node_id: str):
        return success(supervisor.host().node(node_id))


class NodeDrainView(APIView):
    @extend_schema(summary="Drain a node: it takes no new deployments, and its own move to other nodes one by one "
                           "(each answers on its new node before the old engine stops)")
    def put(self, request, node_id: str):
        return success(services.drain_node(node_id=node_id), "Node draining")


class NodeUndrainView(APIView):
    @extend_schema(summary="Let a drained node take deployments again")
    def put(self, request, node_id: str):
        return success(services.undrain_node(node_id=node_id), "Node takes deployments again")
