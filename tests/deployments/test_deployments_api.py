"""Deployments on the real llama.cpp engine: a tiny GGUF downloaded through our downloader, then supervised."""

import json
import os
import signal
import socket
import time
from pathlib import Path

import psutil
import pytest

from tests.engines import TINY_REPO, deploy, download, wait_deployment
from tests.envelope import assert_error, assert_success
from tests.service import Service, wait_for

pytest.importorskip("llama_cpp", reason="llama-cpp-python[server] is not installed")
pytest.importorskip("gguf", reason="the gguf package is not installed")

@pytest.fixture(scope="module")
def dep_service(tmp_path_factory, engine_env, tiny_gguf):
    instance = Service(tmp_path_factory.mktemp("deployments"), env=engine_env).start()
    with instance.client() as client:
        download(client, TINY_REPO)
    yield instance
    with instance.client() as client:
        for deployment in assert_success(client.get("/api/deployments/list"))["items"]:
            client.delete(f"/api/deployments/{deployment['deployment_id']}")
    instance.stop()


@pytest.fixture
def api(dep_service):
    with dep_service.client(timeout=60) as client:
        yield client


def alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_lifecycle_on_llama_cpp_with_crash_detection_and_restart(api):
    started = assert_success(deploy(api, name="tiny"))
    assert started["status"] == "starting" and started["engine"] == "llama.cpp" and 18100 <= started["port"] <= 18199
    assert {"deployment_id", "model_id", "status", "host", "port", "created_at"} <= set(started)
    deployment_id = started["deployment_id"]
    running = wait_deployment(api, deployment_id, {"running", "error"})
    assert running["status"] == "running", running
    assert running["started_at"] and running["pid"] and running["restart_count"] == 0

    logs = assert_success(api.get(f"/api/deployments/{deployment_id}/logs", params={"lines": 5}))
    assert 0 < logs["count"] <= 5
    assert_error(api.get(f"/api/deployments/{deployment_id}/logs", params={"lines": 10001}), 400, "VALIDATION_ERROR")
    health = assert_success(api.get(f"/api/deployments/{deployment_id}/health"))
    assert health["healthy"] and health["process_alive"] and health["probe"]["ok"]
    assert health["probe"]["latency_ms"] is not None and health["uptime_seconds"] >= 0
    info = assert_success(api.get(f"/api/deployments/{deployment_id}/model-info"))
    assert info["engine_models"]["data"][0]["id"] == "tiny"
    assert info["architecture"] == "llama" and info["layers"] == 2 and info["format"] == "gguf"

    first_pid = running["pid"]
    killed_at = time.monotonic()
    os.killpg(first_pid, signal.SIGKILL)
    errored = wait_deployment(api, deployment_id, {"error"}, timeout=10)
    assert time.monotonic() - killed_at < 5
    assert "exited" in errored["error"]
    back = wait_deployment(api, deployment_id, {"running"}, timeout=60)
    assert back["restart_count"] == 1 and back["pid"] != first_pid

    stopped = assert_success(api.put(f"/api/deployments/{deployment_id}/stop"))
    assert stopped["status"] == "stopped" and stopped["pid"] is None
    assert not alive(back["pid"])
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind, past TIME_WAIT
        sock.bind(("127.0.0.1", back["port"]))  # the port is free again
    assert_error(api.put(f"/api/deployments/{deployment_id}/stop"), 400, "INVALID_ACTION")
    listed = assert_success(api.get("/api/deployments/list", params={"status": "stopped"}))["items"]
    assert deployment_id in [d["deployment_id"] for d in listed]
    assert_success(api.delete(f"/api/deployments/{deployment_id}"))
    assert_error(api.get(f"/api/deployments/{deployment_id}"), 404, "DEPLOYMENT_NOT_FOUND")


def test_bad_deployment_requests(api):
    assert_error(deploy(api, model_id="nobody/nothing"), 400, "MODEL_NOT_DOWNLOADED")
    assert_error(deploy(api, gpu_memory_utilization=0), 400, "VALIDATION_ERROR")
    assert_error(deploy(api, gpu_memory_utilization=1.5), 400, "VALIDATION_ERROR")
    assert_error(deploy(api, max_model_len=0), 400, "VALIDATION_ERROR")
    assert_error(deploy(api, source="civitai"), 400, "INVALID_SOURCE")
    body = assert_error(deploy(api, engine="vllm"), 400, "VALIDATION_ERROR")  # vLLM serves no GGUF here
    assert "gguf" in body["message"]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert_error(deploy(api, port=taken.getsockname()[1]), 409, "PORT_IN_USE")
    body = assert_error(deploy(api, max_model_len=2_000_000_000), 409, "INSUFFICIENT_MEMORY")
    assert body["details"]["required_bytes"] > body["details"]["available_bytes"]
    for path in ("", "/logs", "/health", "/model-info"):
        assert_error(api.get(f"/api/deployments/deploy_nope{path}"), 404, "DEPLOYMENT_NOT_FOUND")
    assert_error(api.put("/api/deployments/deploy_nope/stop"), 404, "DEPLOYMENT_NOT_FOUND")
    assert_error(api.get("/api/deployments/list", params={"status": "dancing"}), 400, "VALIDATION_ERROR")


def test_engines_outlive_a_service_restart_and_are_adopted(start_service, engine_env, tiny_gguf):
    service = start_service(engine_env)
    with service.client(timeout=60) as client:
        download(client, TINY_REPO)
        deployment_id = assert_success(deploy(client))["deployment_id"]
        running = wait_deployment(client, deployment_id, {"running", "error"})
        assert running["status"] == "running", running
    service.stop()
    assert alive(running["pid"])  # the engine lives on without the service
    service.start()
    with service.client(timeout=60) as client:
        time.sleep(2.5)  # a few supervision rounds
        adopted = assert_success(client.get(f"/api/deployments/{deployment_id}"))
        assert adopted["status"] == "running" and adopted["pid"] == running["pid"]
        assert adopted["restart_count"] == 0
        assert assert_success(client.put(f"/api/deployments/{deployment_id}/stop"))["status"] == "stopped"
    assert not alive(running["pid"])


def test_an_ollama_model_deploys_from_its_model_layer(start_service, engine_env, need_registry, tiny_gguf):
    need_registry.push_ollama_model("tiny-gguf", "latest", [("model", tiny_gguf.read_bytes()),
                                                             ("template", b"{{ .Prompt }}")],
                                    {"model_format": "gguf", "model_family": "llama", "model_type": "100K",
                                     "file_type": "F32"})
    service = start_service(engine_env)
    with service.client(timeout=60) as client:
        download(client, "tiny-gguf:latest", source="ollama")
        deployment_id = assert_success(deploy(client, model_id="tiny-gguf:latest", source="ollama"))["deployment_id"]
        running = wait_deployment(client, deployment_id, {"running", "error"})
        assert running["status"] == "running", running
        info = assert_success(client.get(f"/api/deployments/{deployment_id}/model-info"))
        assert info["has_ollama_template"] is True and info["source"] == "ollama"
        assert_success(client.delete(f"/api/deployments/{deployment_id}"))
    assert not alive(running["pid"])


def test_vllm_argv_follows_its_documented_cli():
    from pathlib import Path

    from deployments.engines import ENGINES, LaunchRequest, ModelFiles

    model = ModelFiles("org/model", "huggingface", "safetensors", Path("/data/snap"), 10)
    launch = ENGINES["vllm"].launch(model, LaunchRequest(host="127.0.0.1", port=8123, served_name="m1",
                                                         max_model_len=4096, gpu_memory_utilization=0.8,
                                                         tensor_parallel_size=2, gpu=True))
    argv = launch.argv
    assert argv[1:3] == ["serve", "/data/snap"]
    flags = dict(zip(argv[3::2], argv[4::2]))
    assert flags == {"--host": "127.0.0.1", "--port": "8123", "--served-model-name": "m1",
                     "--gpu-memory-utilization": "0.8", "--tensor-parallel-size": "2", "--dtype": "auto",
                     "--max-model-len": "4096"}
    assert launch.probe_path == "/health" and launch.env["HF_HUB_OFFLINE"] == "1"
    embed = ENGINES["vllm"].launch(model, LaunchRequest(host="127.0.0.1", port=8123, served_name="e1",
                                                        max_model_len=None, gpu_memory_utilization=0.5,
                                                        tensor_parallel_size=1, gpu=True, task="embed"))
    assert embed.argv[-4:] == ["--runner", "pooling", "--convert", "embed"]  # vLLM's pooling runner
    # Bigger than one node of a cluster: pipeline stages, and vLLM's Ray executor over the cluster's nodes.
    spread = ENGINES["vllm"].launch(model, LaunchRequest(host="10.0.0.2", port=8123, served_name="big",
                                                         max_model_len=None, gpu_memory_utilization=0.9,
                                                         tensor_parallel_size=4, pipeline_parallel_size=2, gpu=True,
                                                         distributed=True))
    flags = dict(zip(spread.argv[3::2], spread.argv[4::2]))
    assert flags["--tensor-parallel-size"] == "4" and flags["--pipeline-parallel-size"] == "2"
    assert flags["--distributed-executor-backend"] == "ray" and "--distributed-executor-backend" not in argv
    assert ENGINES["vllm"].owns("--distributed-executor-backend")
    assert ENGINES["vllm"].default_gpu_count(4, 0, pipeline_parallel_size=2) == 8


OLLAMA_CHAT_TEMPLATE = ("{{ if .System }}<|system|>\n{{ .System }}</s>\n{{ end }}<|user|>\n{{ .Prompt }}</s>\n"
                        "<|assistant|>\n{{ .Response }}</s>\n")


MESSAGES_TEMPLATE = "{{ range .Messages }}<|{{ .Role }}|>{{ .Content }}{{ end }}<|assistant|>"


def test_the_ollama_template_becomes_the_chat_template_of_a_gguf_without_one(start_service, engine_env,
                                                                              need_registry, tmp_path):
    from gguf import GGUFReader

    from tests.fakes.tiny_gguf import write_tiny_gguf

    # BOS and EOS other than llama's <s> and </s>: the converted template must carry the GGUF's own.
    plain = write_tiny_gguf(tmp_path / "plain.gguf", chat_template=None, seed=2, bos_id=5, eos_id=6)
    field = GGUFReader(str(plain)).fields["tokenizer.ggml.tokens"]
    bos, eos = (bytes(field.parts[field.data[index]]).decode() for index in (5, 6))
    templated = write_tiny_gguf(tmp_path / "templated.gguf", seed=4)
    config = {"model_format": "gguf", "model_family": "llama", "file_type": "F32"}
    for name, weights, template in (("tiny-templated", plain, OLLAMA_CHAT_TEMPLATE),
                                    ("tiny-messages", plain, MESSAGES_TEMPLATE),
                                    ("tiny-own-template", templated, MESSAGES_TEMPLATE)):
        need_registry.push_ollama_model(name, "latest", [("model", weights.read_bytes()),
                                                         ("template", template.encode())], config)
    service = start_service(engine_env)
    hello = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
             "max_tokens": 3}
    with service.client(timeout=60) as client:
        ids = {}
        for name in ("tiny-templated", "tiny-messages", "tiny-own-template"):
            download(client, f"{name}:latest", source="ollama")
            ids[name] = assert_success(deploy(client, model_id=name, source="ollama"))["deployment_id"]
        for deployment_id in ids.values():
            assert wait_deployment(client, deployment_id, {"running", "error"})["status"] == "running"
        chat = assert_success(client.post(f"/api/chat/{ids['tiny-templated']}", json=hello))
        assert chat["object"] == "chat.completion" and chat["choices"][0]["message"]["role"] == "assistant"
        # The engine formats the conversation with the converted template and the GGUF's own BOS and EOS.
        command = assert_success(client.get(f"/api/deployments/{ids['tiny-templated']}"))["command"]
        assert "hf-tokenizer-config" in command
        converted = json.loads(Path(command[command.index("--hf_tokenizer_config_path") + 1]).read_text())
        assert (converted["bos_token"], converted["eos_token"]) == (bos, eos) and bos != "<s>"
        # A template the converter cannot translate: the GGUF's own template where it has one…
        assert assert_success(client.post(f"/api/chat/{ids['tiny-own-template']}", json=hello))["choices"]
        # …else chat is refused, naming the construct; plain completions still work.
        refused = assert_error(client.post(f"/api/chat/{ids['tiny-messages']}", json=hello), 400,
                               "CHAT_NOT_SUPPORTED")
        assert "range .Messages" in refused["message"]
        assert assert_success(client.post(f"/api/completions/{ids['tiny-messages']}",
                                          json={"prompt": "Hi", "max_tokens": 2}))["choices"]
        for deployment_id in ids.values():
            assert_success(client.delete(f"/api/deployments/{deployment_id}"))


def test_ollama_templates_render_as_ollama_renders_them():
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from deployments.ollama_template import UntranslatableTemplate, to_jinja

    # llama-cpp-python's hf-tokenizer-config handler: these options, and an empty assistant message appended.
    template = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(
        to_jinja(OLLAMA_CHAT_TEMPLATE))
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "How?"},
                {"role": "assistant", "content": ""}]
    assert template.render(messages=messages) == (
        "<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello</s>\n"
        "<|user|>\nHow?</s>\n<|assistant|>\n")
    with pytest.raises(UntranslatableTemplate, match="range .Messages"):
        to_jinja("{{ range .Messages }}{{ .Content }}{{ end }}")


def test_deploy_command_and_log_rotation(start_service, engine_env, tiny_gguf):
    import subprocess
    import sys

    from tests.service import REPO_ROOT

    service = start_service({**engine_env, "LLM_MANAGER_ENGINE_LOG_MAX_BYTES": "4096"})
    with service.client(timeout=60) as client:
        download(client, TINY_REPO)
    result = subprocess.run([sys.executable, "manage.py", "deploy", TINY_REPO, "--source", "huggingface",
                             "--max-model-len", "256"], cwd=REPO_ROOT, env=service.env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "is running at http://127.0.0.1:" in result.stdout
    deployment_id = result.stdout.split(":")[0]
    with service.client(timeout=60) as client:
        assert assert_success(client.get(f"/api/deployments/{deployment_id}"))["status"] == "running"
        log = service.data_dir / "logs" / "deployments" / f"{deployment_id}.log"
        # llama.cpp writes far more than 4 KiB while loading: the supervisor rotates it, copy-truncate style.
        wait_for(lambda: log.with_name(log.name + ".1").exists(), 15, what="the rotated log")
        assert log.stat().st_size <= 4096 * 4
        client.post(f"/api/completions/{deployment_id}", json={"prompt": "Hi", "max_tokens": 2})
        wait_for(lambda: log.stat().st_size > 0, 10, what="new lines in the live log")
        assert_success(client.delete(f"/api/deployments/{deployment_id}"))
