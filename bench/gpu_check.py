"""GPU placement on a machine with NVIDIA GPUs, end to end through the running service.

What it does, in one run: the service's GPU inventory (NVML) as /api/system/resources shows it; a tiny random
llama (safetensors) downloaded from a hub stand-in and deployed on `transformers serve` with `gpu_count: 1` (the
engine started with CUDA_VISIBLE_DEVICES set to the GPU chosen by free memory, `--device cuda`), a chat answered;
a second deployment with `gpu_ids: [0]`; which deployment holds which GPU (GET /api/nodes/local) beside what
nvidia-smi says the engines' processes hold; the refusals for GPUs that are not there. The report goes to
gpu-check.json in the output folder (default: the working directory).

    python bench/gpu_check.py --model-dir DIR [--out DIR]

DIR holds a tiny transformers model (tests/fakes/tiny_transformers.py writes one). No GPU: it says so and stops.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.engines import deploy, download, wait_deployment  # noqa: E402
from tests.fakes.hub import FakeHub  # noqa: E402
from tests.service import Service  # noqa: E402

REPO = "test-org/tiny-llama-hf"
CHAT = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}


def nvidia_smi_apps() -> list[str]:
    try:
        return subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30).stdout.strip().splitlines()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [f"nvidia-smi: {exc}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path.cwd())
    args = parser.parse_args()
    report: dict = {"steps": []}

    def step(name: str, value) -> None:
        report["steps"].append({"step": name, "value": value})
        print(f"{name}: {json.dumps(value)[:600]}", flush=True)

    files = {path.name: path.read_bytes() for path in args.model_dir.iterdir() if path.is_file()}
    hub = FakeHub().start()
    hub.add_repo(REPO, files=files, library_name="transformers", pipeline_tag="text-generation")
    try:
        with tempfile.TemporaryDirectory() as data:
            service = Service(Path(data), env={"HF_ENDPOINT": hub.url, "HF_TOKEN": "",
                                               "LLM_MANAGER_ENGINE_PORTS": "18400-18499",
                                               "LLM_MANAGER_ENGINE_READY_TIMEOUT": "300",
                                               "LLM_MANAGER_DOWNLOAD_DISK_MARGIN_GB": "0.01"}).start(timeout=180)
            try:
                with service.client(timeout=300) as client:
                    gpus = client.get("/api/system/resources").json()["data"]["gpus"]
                    step("inventory", gpus)
                    if not gpus:
                        step("stop", "NVML reports no GPU here")
                        return
                    step("engines", {engine["name"]: engine["missing"] or "available"
                                     for engine in client.get("/api/engines").json()["data"]["items"]})
                    download(client, REPO)
                    deployments = []
                    for name, placement in (("by-free-memory", {"gpu_count": 1}), ("on-gpu-0", {"gpu_ids": [0]})):
                        started = time.perf_counter()
                        answer = deploy(client, model_id=REPO, name=name, engine="transformers", **placement).json()
                        if not answer.get("success"):
                            step(f"{name} refused", answer)
                            continue
                        shown = wait_deployment(client, answer["data"]["deployment_id"], {"running", "error"},
                                                timeout=300)
                        chat = client.post(f"/api/chat/{shown['deployment_id']}", json=CHAT).json()
                        step(name, {"status": shown["status"], "gpu_ids": shown["gpu_ids"],
                                    "seconds_to_running": round(time.perf_counter() - started, 1),
                                    "command": shown["command"], "error": shown["error"],
                                    "chat": chat.get("data", chat)})
                        deployments.append(shown["deployment_id"])
                    step("nodes/local gpus", client.get("/api/nodes/local").json()["data"]["gpus"])
                    step("nvidia-smi compute apps (pid, memory)", nvidia_smi_apps())
                    step("engine pids", {d: client.get(f"/api/deployments/{d}").json()["data"]["pid"]
                                         for d in deployments})
                    for bad in ({"gpu_ids": [len(gpus)]}, {"gpu_count": len(gpus) + 1}):
                        step(f"refusal {bad}", deploy(client, model_id=REPO, engine="transformers", **bad).json())
                    for deployment_id in deployments:
                        client.delete(f"/api/deployments/{deployment_id}")
            finally:
                service.stop()
                step("service log tail", service.log()[-3000:])
    finally:
        hub.stop()
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu-check.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
