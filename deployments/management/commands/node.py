"""`node head` and `node join HEAD:PORT`: one command per machine to make it a node of the service's Ray cluster.

Both wrap `ray start` with what the service needs: the node's name as a resource (`llm_node:NAME`, which placement
pins deployments with) and a label, this project on the Ray workers' path (their actors import it), a bounded object
store (Ray's default takes 30% of the memory), and on the head the health checks that find a lost node within
seconds. `node list` prints the nodes as GET /api/nodes does.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

# A node that misses three health checks a second apart is dead (Ray's defaults take far longer).
HEAD_ENV = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
            "RAY_health_check_failure_threshold": "3"}


def ray_start_argv(*, head_address: str | None, port: int, name: str, num_gpus: int | None, node_ip: str,
                   object_store_mb: int, dashboard: bool) -> list[str]:
    """`ray start`'s argv for a head (head_address None) or a node joining one."""
    ray = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    if ray is None:
        raise CommandError("Ray is not installed: pip install -r requirements-cluster.txt (the same version on every "
                           "node)")
    argv = [ray, "start", *(["--head", "--port", str(port)] if head_address is None else
                            ["--address", head_address]),
            "--resources", json.dumps({f"llm_node:{name}": 1000}), "--labels", f"llm_manager.node={name}",
            "--object-store-memory", str(object_store_mb * 1024 * 1024), "--disable-usage-stats"]
    if head_address is None:
        argv += ["--include-dashboard", "true" if dashboard else "false"]
    if num_gpus is not None:
        argv += ["--num-gpus", str(num_gpus)]
    if node_ip:
        argv += ["--node-ip-address", node_ip]
    return argv


class Command(BaseCommand):
    help = "Make this machine a node of the cluster: `node head`, `node join HEAD:PORT`; `node list`."

    def add_arguments(self, parser):
        verbs = parser.add_subparsers(dest="verb", required=True)
        for verb in ("head", "join"):
            sub = verbs.add_parser(verb, help="start the Ray head here" if verb == "head" else "join a head")
            if verb == "join":
                sub.add_argument("address", help="the head's HOST:PORT (LLM_MANAGER_RAY_ADDRESS)")
            else:
                sub.add_argument("--port", type=int, default=6379, help="the head's port (default 6379)")
                sub.add_argument("--no-dashboard", action="store_true", help="without Ray's dashboard")
            sub.add_argument("--name", default=socket.gethostname(), help="the node's name (default: host name)")
            sub.add_argument("--num-gpus", type=int, default=None,
                             help="GPUs Ray may place on (default: the ones it detects)")
            sub.add_argument("--node-ip-address", default=settings.NODE_IP,
                             help="the address other nodes reach this one at (LLM_MANAGER_NODE_IP)")
            sub.add_argument("--object-store-mb", type=int, default=512, help="Ray's object store (default 512)")
        verbs.add_parser("list", help="the cluster's nodes")

    def handle(self, *args, verb: str, **options):
        if verb == "list":
            from deployments import supervisor

            for node in supervisor.host().nodes():
                self.stdout.write(f"{node['id']}\t{node['address']}\t{'alive' if node['alive'] else 'lost'}"
                                  f"{' draining' if node['draining'] else ''}\tGPUs {node['gpus']['held']}/"
                                  f"{node['gpus']['total']}\t{len(node['deployments'])} deployment(s)")
            return
        argv = ray_start_argv(head_address=options.get("address") if verb == "join" else None,
                              port=options.get("port") or 0, name=options["name"], num_gpus=options["num_gpus"],
                              node_ip=options["node_ip_address"], object_store_mb=options["object_store_mb"],
                              dashboard=not options.get("no_dashboard"))
        # The actors Ray starts on this node import deployments.engine_actor from this project.
        path = os.pathsep.join(filter(None, [str(settings.BASE_DIR), os.environ.get("PYTHONPATH", "")]))
        # …and keep the models they fetch (without shared storage) in this node's data dir.
        env = {**os.environ, "PYTHONPATH": path, "LLM_MANAGER_DATA_DIR": str(settings.DATA_DIR),
               **(HEAD_ENV if verb == "head" else {})}
        result = subprocess.run(argv, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise CommandError(f"ray start failed ({result.returncode}):\n{result.stderr[-4000:]}")
        self.stdout.write(f"node {options['name']} is up" + (f"; other machines join with: manage.py node join "
                                                               f"{options['node_ip_address'] or '<this address>'}:"
                                                               f"{options['port']}" if verb == "head" else ""))
