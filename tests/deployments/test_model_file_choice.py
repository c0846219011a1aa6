"""Which file of a GGUF repository a deployment takes: the choice over repositories as they are published
(quantizations, vision projectors, split models), then end to end on llama.cpp."""

from __future__ import annotations

import subprocess
import sys

import pytest

from catalog.sources import ModelFileChoiceError, StoredFile
from catalog.sources.repository import choose_gguf, gguf_models
from tests.engines import deploy, download, wait_deployment
from tests.envelope import assert_error, assert_success
from tests.service import REPO_ROOT


def _repo(*names: str) -> list[StoredFile]:
    return [StoredFile(path=name, destination=f"/x/{name}", size=100 + index) for index, name in enumerate(names)]


def _chosen(*names: str, **asked) -> tuple[str, str]:
    model, reason = choose_gguf(gguf_models(_repo(*names)), **asked)
    return model.path, reason


def test_the_preferred_quantization_and_never_a_projector():
    repo = ("README.md", "model-Q2_K.gguf", "model-Q8_0.gguf", "model-Q4_K_M.gguf", "mmproj-model-f16.gguf")
    path, reason = _chosen(*repo)
    assert path == "model-Q4_K_M.gguf" and "Q4_K_M" in reason
    assert _chosen("model-Q2_K.gguf", "model-Q8_0.gguf")[0] == "model-Q8_0.gguf"
    assert _chosen("model-Q2_K.gguf", "model-IQ2_XXS.gguf")[0] == "model-Q2_K.gguf"
    # A vision repo: the model, not its image projector, even where the projector is the smaller file.
    assert _chosen("mmproj-F16.gguf", "llava-v1.6.Q5_K_M.gguf")[0] == "llava-v1.6.Q5_K_M.gguf"
    assert _chosen("mmproj-F16.gguf", "weights.gguf") == ("weights.gguf", "the only GGUF model in the repository")
    # Quantizations outside the preferred list: the largest (the most precise) of those named.
    assert _chosen("m.IQ1_S.gguf", "m.IQ2_XXS.gguf")[0] == "m.IQ2_XXS.gguf"


def test_a_split_model_is_one_model_and_the_engine_gets_its_first_shard():
    repo = ("Q8_0/big-Q8_0-00002-of-00003.gguf", "Q8_0/big-Q8_0-00001-of-00003.gguf",
            "Q8_0/big-Q8_0-00003-of-00003.gguf", "big-Q2_K.gguf")
    models = gguf_models(_repo(*repo))
    split = next(m for m in models if m.quantization == "Q8_0")
    assert split.path == "Q8_0/big-Q8_0-00001-of-00003.gguf" and len(split.shards) == 3 and split.size == 303
    assert _chosen(*repo)[0] == "Q8_0/big-Q8_0-00001-of-00003.gguf"
    assert _chosen(*repo, file="Q8_0/big-Q8_0-00003-of-00003.gguf")[0] == "Q8_0/big-Q8_0-00001-of-00003.gguf"
    # A split model not all of whose shards were downloaded is no candidate.
    assert [m.path for m in gguf_models(_repo(*repo[:2], "big-Q2_K.gguf"))] == ["big-Q2_K.gguf"]


def test_what_the_caller_asks_for_and_what_cannot_be_picked():
    repo = ("m.Q4_K_M.gguf", "m.Q5_K_M.gguf", "mmproj.gguf")
    assert _chosen(*repo, quantization="q5_k_m") == ("m.Q5_K_M.gguf", "the quantization asked for (Q5_K_M)")
    assert _chosen(*repo, file="m.Q5_K_M.gguf") == ("m.Q5_K_M.gguf", "the file asked for")
    with pytest.raises(ModelFileChoiceError) as missing:
        _chosen(*repo, quantization="Q3_K_S")
    assert missing.value.code == "VALIDATION_ERROR" and "Q4_K_M, Q5_K_M" in str(missing.value)
    with pytest.raises(ModelFileChoiceError) as projector:
        _chosen(*repo, file="mmproj.gguf")
    assert projector.value.code == "VALIDATION_ERROR" and projector.value.choices == ["m.Q4_K_M.gguf",
                                                                                       "m.Q5_K_M.gguf"]
    with pytest.raises(ModelFileChoiceError) as ambiguous:
        _chosen("first.gguf", "second.gguf")
    assert ambiguous.value.code == "AMBIGUOUS_MODEL_FILE" and ambiguous.value.choices == ["first.gguf", "second.gguf"]
    with pytest.raises(ModelFileChoiceError) as twice:
        _chosen("a/m.Q4_K_M.gguf", "b/m.Q4_K_M.gguf")
    assert twice.value.code == "AMBIGUOUS_MODEL_FILE"


MULTI_REPO = "test-org/tiny-multi-GGUF"
UNNAMED_REPO = "test-org/tiny-unnamed-GGUF"


def test_deploying_a_repository_of_several_gguf_files(start_service, engine_env, fake_hub, tiny_gguf):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python[server] is not installed")
    weights = tiny_gguf.read_bytes()
    fake_hub.add_repo(MULTI_REPO, library_name="gguf", files={
        "tiny.Q2_K.gguf": weights + b"\0" * 7, "tiny.Q4_K_M.gguf": weights, "mmproj-tiny-f16.gguf": b"GGUF projector"})
    fake_hub.add_repo(UNNAMED_REPO, library_name="gguf", files={"one.gguf": weights, "two.gguf": weights + b"\0"})
    service = start_service(engine_env)
    with service.client(timeout=60) as client:
        download(client, MULTI_REPO)
        download(client, UNNAMED_REPO)
        started = assert_success(deploy(client, model_id=MULTI_REPO))
        running = wait_deployment(client, started["deployment_id"], {"running", "error"})
        assert running["status"] == "running" and running["model_file"] == "tiny.Q4_K_M.gguf"
        info = assert_success(client.get(f"/api/deployments/{started['deployment_id']}/model-info"))
        assert info["file"] == "tiny.Q4_K_M.gguf" and "preferred" in info["file_reason"]
        assert info["path"].endswith("tiny.Q4_K_M.gguf")
        # The restart takes the same file.
        assert_success(client.put(f"/api/deployments/{started['deployment_id']}/restart"))
        assert wait_deployment(client, started["deployment_id"], {"running", "error"})["model_file"] == \
            "tiny.Q4_K_M.gguf"
        assert_success(client.delete(f"/api/deployments/{started['deployment_id']}"))

        missing = assert_error(deploy(client, model_id=MULTI_REPO, quantization="Q8_0"), 400, "VALIDATION_ERROR")
        assert "Q2_K, Q4_K_M" in missing["message"]
        assert_error(deploy(client, model_id=MULTI_REPO, file="mmproj-tiny-f16.gguf"), 400, "VALIDATION_ERROR")
        ambiguous = assert_error(deploy(client, model_id=UNNAMED_REPO), 400, "AMBIGUOUS_MODEL_FILE")
        assert ambiguous["details"]["choices"] == ["one.gguf", "two.gguf"]
        chosen = assert_success(deploy(client, model_id=UNNAMED_REPO, file="two.gguf"))
        assert assert_success(client.get(f"/api/deployments/{chosen['deployment_id']}"))["model_file"] == "two.gguf"
        assert_success(client.delete(f"/api/deployments/{chosen['deployment_id']}"))
        assert assert_success(client.get("/api/deployments/list"))["items"] == []
    # The CLI's deploy takes the same choice.
    refused = subprocess.run([sys.executable, "manage.py", "deploy", MULTI_REPO, "--source", "huggingface",
                              "--quantization", "Q8_0"], cwd=REPO_ROOT, env=service.env, capture_output=True,
                             text=True, timeout=120)
    assert refused.returncode != 0 and "VALIDATION_ERROR: " in refused.stderr and "Q4_K_M" in refused.stderr
