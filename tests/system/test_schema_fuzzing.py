"""The OpenAPI schema tells the truth: schemathesis, every check and the stateful phase (through the schema's links),
against the running service finds nothing; and the refusals it once found, asserted one by one."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from pathlib import Path

from tests.envelope import assert_error

CONFIG = Path(__file__).with_name("schemathesis.toml")
FUZZER_KEY = "fuzzer-key-of-all-scopes"


def test_schemathesis_finds_no_failure(start_service, tmp_path):
    # With LLM_MANAGER_API_KEY, which it sends: the keys it creates (POST /api/keys) do not lock it out.
    service = start_service({"LLM_MANAGER_API_KEY": FUZZER_KEY})
    seed = random.randrange(1, 2**31)
    print(f"schemathesis seed: {seed}")
    cli = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [str(cli), "--config-file", str(CONFIG), "run", f"{service.url}/api/schema/", "--url", service.url, "--header", f"Authorization: Bearer {FUZZER_KEY}",
         "--checks", "all", "--max-examples", "25", "--seed", str(seed), "--request-timeout", "30",
         "--report-dir", str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    tail = result.stdout[-6000:]
    assert result.returncode == 0, f"seed {seed}:\n{tail}"
    assert "Stateful" in result.stdout and " passed" in result.stdout, tail
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_the_refusals_fuzzing_once_found(api):
    # Numbers past what a database integer holds are refused, not a 500.
    assert_error(api.get("/api/downloads/list", params={"page": 10**20}), 400, "VALIDATION_ERROR")
    assert_error(api.get("/api/models/search", params={"page": 10**19}), 400, "VALIDATION_ERROR")
    assert_error(api.get(f"/api/models/sync/{10**20}"), 404, "NOT_FOUND")
    # Bodies over LLM_MANAGER_MAX_BODY_MB: 413 in the envelope (OpenAI's shape on /v1), before any parsing.
    big = b'{"limit": 1, "pad": "' + b"x" * (33 * 1024 * 1024) + b'"}'
    too_large = api.post("/api/models/sync", content=big, headers={"Content-Type": "application/json"})
    assert assert_error(too_large, 413, "PAYLOAD_TOO_LARGE")["details"]["max_bytes"] == 32 * 1024 * 1024
    openai = api.post("/v1/chat/completions", content=big, headers={"Content-Type": "application/json"})
    assert openai.status_code == 413 and openai.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    # A method a route does not take: 405 with the Allow header.
    for path, allowed in (("/v1/models", "GET"), ("/v1/chat/completions", "POST"), ("/api/chat/x", "POST"),
                          ("/api/downloads/list", "GET")):
        refused = api.request("TRACE", path)
        assert refused.status_code == 405 and set(refused.headers["Allow"].replace(" ", "").split(",")) >= {
            allowed}, (path, refused.headers)
    # What the schema declares is what is checked: empty choices, unknown parameters and fields, other types.
    assert_error(api.get("/api/downloads/list", params={"status": ""}), 400, "VALIDATION_ERROR")
    assert_error(api.get("/api/downloads/list", params={"colour": "red"}), 400, "VALIDATION_ERROR")
    assert_error(api.post("/api/models/sync", json=[None]), 400, "VALIDATION_ERROR")
    assert_error(api.post("/api/models/sync", json={"limit": "5"}), 400, "VALIDATION_ERROR")
    assert_error(api.post("/api/downloads/start", json={"model_id": "a/b", "source": "huggingface",
                                                        "revison": "main"}), 400, "VALIDATION_ERROR")
    assert_error(api.post("/api/models/import", json={"path": 0}), 400, "VALIDATION_ERROR")
    assert_error(api.post("/api/models/import", json={"path": "x" * 4000}), 400, "VALIDATION_ERROR")
    assert_error(api.post("/api/models/import", json={"path": "~no-such-user/m.gguf"}), 400, "VALIDATION_ERROR")
    assert_error(api.get("/api/models/categories", params={"source": ""}), 400, "VALIDATION_ERROR")
    # A filter of only control characters (which trimming empties) filters nothing rather than being refused.
    assert api.get("/api/audit", params={"action": "\x1d", "actor": "·Ü;*|"}).json()["data"]["items"] == []
    assert_error(api.get("/api/models/categories", params={"source": "civitai"}), 400, "INVALID_SOURCE")
    openai_model = api.post("/v1/completions", json={"model": ["a"], "prompt": "hi"})
    assert openai_model.status_code == 400 and openai_model.json()["error"]["code"] == "VALIDATION_ERROR"
    schema = api.get("/api/schema/", params={"format": "json"}).json()
    links = schema["paths"]["/api/downloads/start"]["post"]["responses"]["2XX"]["links"]
    assert links["api_downloads_retrieve"]["parameters"] == {"task_id": "$response.body#/data/task/id"}
