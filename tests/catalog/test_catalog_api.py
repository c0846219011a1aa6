"""Catalog endpoints (contract section 2) against the fake hub, the fake library and a real registry."""

import subprocess
import sys
import time

import pytest

from tests import world
from tests.envelope import assert_error, assert_success
from tests.fakes.hub import FakeHub
from tests.fakes.ollama_library import FakeOllamaLibrary
from tests.service import REPO_ROOT, wait_for

SHARED_FIXTURES = REPO_ROOT.parent / "shared" / "fixtures" / "ollama-com"


def search(api, **params):
    return assert_success(api.get("/api/models/search", params=params))


def test_search_hugging_face_maps_the_contract_fields(api):
    data = search(api, query="DialoGPT", source="huggingface")
    assert data["offline"] is False
    item = next(i for i in data["items"] if i["id"] == "microsoft/DialoGPT-medium")
    assert item["name"] == "DialoGPT Medium"
    assert item["source"] == "huggingface" and item["model_type"] == "conversational"
    assert item["parameters"] == "117M" and item["downloads"] == 50000 and item["likes"] == 1200
    assert {"conversational", "pytorch"} <= set(item["tags"])
    assert item["description"] == "A conversational response generation model"
    assert item["is_favorite"] is False and item["downloaded"] is False


def test_search_ollama_reads_the_library_pages(api, fake_library):
    data = search(api, query="llama", source="ollama")
    item = next(i for i in data["items"] if i["id"] == "llama3.2")
    assert item["source"] == "ollama"
    assert item["description"] == "Small Llama models for chat and tool use on modest hardware."
    assert item["downloads"] == 2_500_000
    assert {"tools", "1b", "3b"} <= set(item["tags"])
    assert any("q=llama" in path for path in fake_library.requests)


def test_search_both_sources_and_filter_by_type(api):
    both = search(api, query="llama", page_size=100)
    assert {"huggingface", "ollama"} <= {i["source"] for i in both["items"]}
    typed = search(api, source="huggingface", model_type="text-classification", page_size=100)
    assert typed["items"] and all(i["model_type"] == "text-classification" for i in typed["items"])
    embedding = search(api, source="ollama", model_type="embedding")
    assert "nomic-embed-text" in [i["id"] for i in embedding["items"]]


def test_a_query_with_filters_matches_the_type_exactly(api, fake_hub):
    # The index narrows a query's matches by the type's words; "text generation" is also in the
    # words of "text-generation-inference", and the answer must still hold only the type asked for.
    tags = ["text-generation", "text-generation-inference", "text-generation", "sentence-similarity"]
    for n, pipeline_tag in enumerate(tags):
        fake_hub.add_repo(f"facet-org/facet-model-{n}", pipeline_tag=pipeline_tag, downloads=10 - n)
    by_source = search(api, query="facet", source="huggingface")
    assert by_source["pagination"]["total"] == 4 and len(by_source["items"]) == 4
    typed = search(api, query="facet", source="huggingface", model_type="text-generation")
    assert [i["id"] for i in typed["items"]] == ["facet-org/facet-model-0", "facet-org/facet-model-2"]
    assert typed["pagination"]["total"] == 2
    # No other type holds the words of this one: the index's count alone answers, and must still be right.
    longest = search(api, query="facet", source="huggingface", model_type="text-generation-inference")
    assert [i["id"] for i in longest["items"]] == ["facet-org/facet-model-1"] and longest["pagination"]["total"] == 1
    assert search(api, query="facet", source="ollama")["pagination"]["total"] == 0


def test_search_pagination_block_and_edges(api):
    first = search(api, query="filler", source="huggingface", page=1, page_size=7)
    assert first["pagination"] == {"page": 1, "page_size": 7, "total": 30, "total_pages": 5,
                                   "has_next": True, "has_prev": False}
    assert [i["id"] for i in first["items"]] == [f"filler-org/filler-model-{n:02d}" for n in range(7)]
    last = search(api, query="filler", source="huggingface", page=5, page_size=7)
    assert len(last["items"]) == 2 and last["pagination"]["has_next"] is False and last["pagination"]["has_prev"]
    past = search(api, query="filler", source="huggingface", page=9, page_size=7)
    assert past["items"] == [] and past["pagination"]["total"] == 30 and past["pagination"]["page"] == 9
    assert len(search(api, query="filler", page_size=100)["items"]) == 30
    by_likes = search(api, query="filler", source="huggingface", sort="likes", page_size=3)
    assert [i["likes"] for i in by_likes["items"]] == [29, 28, 27]


@pytest.mark.parametrize(
    "params, code",
    [
        ({"source": "civitai"}, "INVALID_SOURCE"),
        ({"page": "abc"}, "VALIDATION_ERROR"),
        ({"page": "0"}, "VALIDATION_ERROR"),
        ({"page_size": "101"}, "VALIDATION_ERROR"),
        ({"page_size": "x"}, "VALIDATION_ERROR"),
        ({"sort": "random"}, "VALIDATION_ERROR"),
    ],
)
def test_search_bad_input(api, params, code):
    assert_error(api.get("/api/models/search", params=params), 400, code)


def test_search_falls_back_to_the_catalog_when_the_source_is_down_or_slow(start_service):
    hub = world.populate_hub(FakeHub()).start()
    try:
        service = start_service({"HF_ENDPOINT": hub.url, "LLM_MANAGER_SOURCE_TIMEOUT": "1"})
        with service.client() as client:
            live = search(client, query="DialoGPT", source="huggingface")
            assert live["offline"] is False and live["items"]
            hub.delay_seconds = 4
            started = time.monotonic()
            slow = client.get("/api/models/search", params={"query": "Dialo", "source": "huggingface"})
            assert time.monotonic() - started < 3.5
            slow_data = assert_success(slow)
            assert slow_data["offline"] is True and "local catalog" in slow.json()["message"]
            assert [i["id"] for i in slow_data["items"]] == ["microsoft/DialoGPT-medium"]
            hub.stop()
            down = search(client, query="medium", source="huggingface")
            assert down["offline"] is True
            assert [i["id"] for i in down["items"]] == ["microsoft/DialoGPT-medium"]
    finally:
        hub.stop()


def test_info_for_a_hugging_face_model(api):
    data = assert_success(api.get("/api/models/microsoft/DialoGPT-medium/info"))
    assert data["id"] == "microsoft/DialoGPT-medium" and data["source"] == "huggingface"
    assert data["parameters"] == "117M" and data["model_type"] == "conversational"
    files = {f["path"]: f for f in data["files"]}
    assert files["pytorch_model.bin"]["size"] == len(world.DIALOGPT_WEIGHTS)
    assert files["pytorch_model.bin"]["lfs_sha256"]
    total = sum(f["size"] for f in data["files"])
    assert data["size_gb"] == round(total / 1024**3, 3)
    assert data["created_at"] == "2023-01-01T00:00:00Z" and data["updated_at"] == "2023-12-01T00:00:00Z"
    assert data["gated"] is False and data["library"] == "transformers"


def test_info_for_a_gguf_repo_lists_quantizations(api):
    data = assert_success(api.get("/api/models/TheBloke/TinyLlama-GGUF/info", params={"source": "huggingface"}))
    assert data["quantizations"] == ["Q4_K_M", "Q8_0"]
    assert data["parameters"] == "1.1B"
    assert data["details"]["gguf"]["context_length"] == 2048


def test_info_for_an_ollama_model_tag_reads_the_registry(api, need_registry):
    data = assert_success(api.get("/api/models/tiny-test:q4/info"))
    assert data["id"] == "tiny-test:q4" and data["source"] == "ollama"
    config_size = len(__import__("json").dumps(world.TINY_OLLAMA_CONFIG).encode())
    expected = sum(len(layer) for _, layer in world.TINY_OLLAMA_LAYERS) + config_size
    assert data["size_gb"] == round(expected / 1024**3, 3)
    assert data["parameters"] == "15M"
    assert data["details"]["quantization"] == "Q4_K_M" and data["details"]["family"] == "llama"
    assert data["description"] == "A tiny llama for the tests, with a GGUF that really loads."


def test_ollama_info_merges_the_library_page_with_the_registry(api, need_registry, fake_library):
    """A model the library's search does not list still gets its page's description, pulls and capabilities."""
    from tests.fakes.ollama_library import LibraryModel

    need_registry.push_ollama_model("tiny-unlisted", "latest", world.TINY_OLLAMA_LAYERS, world.TINY_OLLAMA_CONFIG)
    fake_library.models["tiny-unlisted"] = LibraryModel(
        "tiny-unlisted", "Only its own page describes it.", ["tools"], ["15m"], pulls="1.5K", updated="3 days ago",
        listed=False)
    try:
        assert "tiny-unlisted" not in fake_library.page("/library?q=tiny-unlisted")[1]
        data = assert_success(api.get("/api/models/tiny-unlisted/info", params={"source": "ollama"}))
    finally:
        del fake_library.models["tiny-unlisted"]
    assert data["id"] == "tiny-unlisted:latest"
    assert data["description"] == "Only its own page describes it."
    assert data["downloads"] == 1500 and data["model_type"] == "tools"
    assert data["details"]["capabilities"] == ["tools"] and data["details"]["updated"] == "3 days ago"
    assert data["details"]["quantization"] == "Q4_K_M"  # the registry's part


def test_the_model_page_parser_reads_a_real_ollama_model_page():
    if not SHARED_FIXTURES.exists():
        pytest.skip(f"the captured ollama.com pages are not at {SHARED_FIXTURES}")
    from catalog.sources.ollama import ModelPageParser

    parser = ModelPageParser()
    parser.feed((SHARED_FIXTURES / "models" / "magistral" / "details.html").read_text())
    assert parser.entry.name == "magistral"
    assert parser.entry.description == "Magistral is a small, efficient reasoning model with 24B parameters."
    assert parser.entry.pulls == 221_000 and parser.entry.updated == "1 month ago"
    assert parser.entry.sizes == ["24b"]


def test_info_of_unknown_and_gated_models(api):
    assert_error(api.get("/api/models/nobody/nothing/info"), 404, "MODEL_NOT_FOUND")
    assert_error(api.get("/api/models/no-such-model:7b/info"), 404, "MODEL_NOT_FOUND")
    gated = assert_success(api.get("/api/models/meta-llama/Gated-Llama/info"))
    assert gated["gated"] == "manual"
    assert_error(api.get("/api/models/x/info", params={"source": "bogus"}), 400, "INVALID_SOURCE")


def test_favorites_round_trip(api):
    path = "/api/models/microsoft/DialoGPT-medium/favorite"
    api.delete(path)  # whatever an earlier test left
    first = assert_success(api.post(path), 201)
    second = assert_success(api.post(path), 200)
    assert first == second and first["model_id"] == "microsoft/DialoGPT-medium"
    favorites = search(api, favorite="true")
    assert [i["id"] for i in favorites["items"]] == ["microsoft/DialoGPT-medium"]
    assert favorites["items"][0]["is_favorite"] is True
    assert assert_success(api.get("/api/models/stats"))["favorites"] == 1
    assert_success(api.delete(path))
    assert_error(api.delete(path), 404, "MODEL_NOT_FOUND")
    assert search(api, favorite="true")["items"] == []


def test_favoriting_a_model_not_in_the_catalog_looks_it_up(api, need_registry):
    path = "/api/models/tiny-test:latest/favorite"
    api.delete(path)
    data = assert_success(api.post(path), 201)
    assert data == {"model_id": "tiny-test:latest", "source": "ollama", "created_at": data["created_at"]}
    assert_error(api.post("/api/models/nobody/nothing/favorite"), 404, "MODEL_NOT_FOUND")
    api.delete(path)


def test_categories_per_source(api):
    search(api, source="huggingface", page_size=100)
    search(api, source="ollama")
    categories = assert_success(api.get("/api/models/categories"))["categories"]
    hf = {c["name"]: c["count"] for c in categories["huggingface"]}
    assert hf["text-classification"] == 15 and hf["fill-mask"] == 15 and hf["conversational"] == 1
    ollama = {c["name"]: c["count"] for c in categories["ollama"]}
    assert ollama["embedding"] >= 1 and ollama["tools"] >= 1
    only = assert_success(api.get("/api/models/categories", params={"source": "ollama"}))["categories"]
    assert list(only) == ["ollama"]
    assert_error(api.get("/api/models/categories", params={"source": "x"}), 400, "INVALID_SOURCE")


def test_trending_orders_and_limits(api):
    hf = assert_success(api.get("/api/models/trending", params={"source": "huggingface", "limit": 3}))["items"]
    assert [i["id"] for i in hf] == ["TheBloke/TinyLlama-GGUF", "microsoft/DialoGPT-medium",
                                     "filler-org/filler-model-29"]
    ollama = assert_success(api.get("/api/models/trending", params={"source": "ollama", "limit": 2}))["items"]
    assert [i["downloads"] for i in ollama] == sorted([i["downloads"] for i in ollama], reverse=True)
    assert ollama[0]["id"] == "nomic-embed-text"
    mixed = assert_success(api.get("/api/models/trending"))["items"]
    assert len(mixed) == 10 and {i["source"] for i in mixed} == {"huggingface", "modelscope", "ollama"}
    for limit in ("51", "0", "ten"):
        assert_error(api.get("/api/models/trending", params={"limit": limit}), 400, "VALIDATION_ERROR")


def test_stats_count_the_catalog(api):
    search(api, source="huggingface", page_size=100)
    data = assert_success(api.get("/api/models/stats"))
    assert data["by_source"]["huggingface"] >= 32
    assert data["by_type"]["huggingface"]["fill-mask"] == 15
    assert data["total"] == sum(data["by_source"].values())
    assert set(data["last_sync"]) == {"huggingface", "modelscope", "ollama"}
    assert set(data["by_source"]) == {"huggingface", "local", "modelscope", "ollama"}


def test_sync_job_runs_on_a_real_worker(api):
    started = assert_success(api.post("/api/models/sync", json={"source": "huggingface", "limit": 25}), 202)
    job_id = started["id"]
    assert [job["source"] for job in started["jobs"]] == ["huggingface"]

    def finished():
        job = assert_success(api.get(f"/api/models/sync/{job_id}"))
        return job if job["status"] in ("completed", "failed") else None

    job = wait_for(finished, 60, interval=0.3, what="the sync job")
    assert job["status"] == "completed" and job["added"] + job["updated"] == 25 and job["failed"] == 0
    stats = assert_success(api.get("/api/models/stats"))
    assert stats["last_sync"]["huggingface"]["status"] == "completed"
    both = assert_success(api.post("/api/models/sync"), 202)
    assert [job["source"] for job in both["jobs"]] == ["huggingface", "modelscope", "ollama"]
    assert_error(api.post("/api/models/sync", json={"source": "nowhere"}), 400, "INVALID_SOURCE")
    assert_error(api.post("/api/models/sync", json={"limit": 0}), 400, "VALIDATION_ERROR")
    assert_error(api.get("/api/models/sync/999999"), 404, "NOT_FOUND")


def test_sync_models_command_shows_progress(service):
    result = subprocess.run(
        [sys.executable, "manage.py", "sync_models", "--source", "ollama", "--limit", "3"],
        cwd=REPO_ROOT, env=service.env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "3/3" in result.stdout and "ollama:" in result.stdout


def test_parser_reads_the_real_ollama_pages(start_service):
    if not SHARED_FIXTURES.exists():
        pytest.skip(f"the captured ollama.com pages are not at {SHARED_FIXTURES}")
    library = FakeOllamaLibrary(fixtures_dir=SHARED_FIXTURES).start()
    try:
        service = start_service({"LLM_MANAGER_OLLAMA_LIBRARY": library.url})
        with service.client() as client:
            data = search(client, query="wizard", source="ollama")
            found = {i["id"]: i for i in data["items"]}
            assert found["wizardlm2"]["downloads"] == 386_800
            assert {"7b", "8x22b"} <= set(found["wizardlm2"]["tags"])
            popular = search(client, source="ollama", page_size=100)
            # One live search stores up to 100 models of the 176 on the page.
            assert popular["pagination"]["total"] >= 100
            deepseek = next(i for i in popular["items"] if i["id"] == "deepseek-r1")
            assert {"tools", "thinking"} <= set(deepseek["tags"])
    finally:
        library.stop()
