"""Engine flags and environment per deployment, on a real llama.cpp engine, and the engines' own listing."""

from __future__ import annotations

import psutil

from tests.engines import deploy, download, wait_deployment
from tests.envelope import assert_error, assert_success


def test_engine_args_and_env_reach_the_engine_and_show_masked(start_service, engine_env, tiny_gguf):
    service = start_service(engine_env)
    with service.client(timeout=60) as client:
        download(client, "test-org/tiny-llama-GGUF")
        started = assert_success(deploy(client, engine_args=["--n_threads", "1", "--n_batch=64"],
                                        env={"LLAMA_TEST_FLAG": "on", "MY_API_TOKEN": "s3cret"}))
        running = wait_deployment(client, started["deployment_id"], {"running", "error"})
        assert running["status"] == "running", running
        shown = assert_success(client.get(f"/api/deployments/{started['deployment_id']}"))
        command = shown["command"]
        # The operator's flags come after the service's own.
        assert command[-3:] == ["--n_threads", "1", "--n_batch=64"]
        assert command.index("--port") < command.index("--n_threads")
        assert shown["engine_args"] == ["--n_threads", "1", "--n_batch=64"]
        assert shown["env"] == {"LLAMA_TEST_FLAG": "on", "MY_API_TOKEN": "***"}
        assert "s3cret" not in client.get(f"/api/deployments/{started['deployment_id']}").text
        engine = psutil.Process(running["pid"])
        assert engine.cmdline()[-3:] == ["--n_threads", "1", "--n_batch=64"]
        assert engine.environ()["LLAMA_TEST_FLAG"] == "on" and engine.environ()["MY_API_TOKEN"] == "s3cret"
        assert_success(client.delete(f"/api/deployments/{started['deployment_id']}"))

        for args, named in ((["--port", "9"], "--port"), (["--model=/etc/passwd"], "--model"),
                            (["--host", "0.0.0.0"], "--host"), (["--api-key", "x"], "--api-key")):
            refused = assert_error(deploy(client, engine_args=args), 400, "VALIDATION_ERROR")
            assert named in refused["message"]
        assert "not a flag" in assert_error(deploy(client, engine_args=["n_threads", "1"]), 400,
                                            "VALIDATION_ERROR")["message"]
        assert_error(deploy(client, engine_args=[1, 2]), 400, "VALIDATION_ERROR")
        assert_error(deploy(client, engine_args="--n_threads 1"), 400, "VALIDATION_ERROR")
        assert_error(deploy(client, env={"N": 1}), 400, "VALIDATION_ERROR")
        assert_error(deploy(client, env={"BAD NAME": "x"}), 400, "VALIDATION_ERROR")
        assert_error(deploy(client, env=["A=1"]), 400, "VALIDATION_ERROR")


def test_engines_list_says_what_runs_here(api):
    engines = {engine["name"]: engine for engine in assert_success(api.get("/api/engines"))["items"]}
    assert set(engines) == {"llama.cpp", "transformers", "vllm"}
    llama = engines["llama.cpp"]
    assert llama["available"] is True and llama["version"] == "0.3.36" and llama["missing"] is None
    assert "--port" in llama["owned_flags"] and any(o["flag"].startswith("--n_gpu_layers") for o in llama["options"])
    vllm = engines["vllm"]
    assert vllm["available"] is False and vllm["missing"] and vllm["needs_gpu"] is True
