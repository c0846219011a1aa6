"""The search index (Tantivy, in the web server) answers as the database's full-text search does, and never with a
catalog older than the database's: after a change the database answers until the index is built again."""

from __future__ import annotations

from contextlib import ExitStack

import httpx
import pytest

from tests.postgres import scratch_database
from tests.service import Service, metric, wait_for
from tests.synthetic_catalog import fill, searches


def _answered_by(client: httpx.Client, who: str) -> float:
    return metric(client, "llm_manager_catalog_searches_total", answered_by=who)


def _indexed(client: httpx.Client) -> float:
    return metric(client, "llm_manager_search_index_documents")


def _answers(client: httpx.Client, queries: list[dict]) -> list[dict]:
    return [client.get("/api/models/search", params=params).json()["data"] for params in queries]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_search_index_answers_as_the_database_does_and_follows_its_changes(tmp_path, sources_env, database):
    with ExitStack() as stack:
        env = {**sources_env, "LLM_MANAGER_DATA_DIR": str(tmp_path), "LLM_MANAGER_OFFLINE": "1"}
        if database == "postgresql":  # the changes are counted by that database's own triggers
            env["DATABASE_URL"] = stack.enter_context(scratch_database())
        _compare_and_follow(tmp_path, env)


def _compare_and_follow(tmp_path, env: dict[str, str]) -> None:
    size = fill(env, 3000)
    # The mix, and filters only the seeded Ollama library's few entries have (which Tantivy reads, where a broad
    # filter's page is found by walking the sort order).
    queries = searches(200, seed=23) + [{"source": "ollama", "model_type": kind, "sort": sort}
                                        for kind in ("text", "tools", "vision") for sort in ("downloads", "updated")]
    answers = {}
    for backend in ("fts", "index"):
        service = Service(tmp_path, env={**env, "LLM_MANAGER_SEARCH_BACKEND": backend}, args=["--no-worker"]).start()
        try:
            with service.client(timeout=30) as client:
                if backend == "index":
                    # The first search finds no index: the database answers, and the index is built meanwhile.
                    first = client.get("/api/models/search", params={"query": "llama"}).json()["data"]
                    assert _answered_by(client, "database") == 1 and first["pagination"]["total"] > 0
                    wait_for(lambda: _indexed(client) == size, 60, interval=0.2, what="the search index")
                answers[backend] = _answers(client, queries)
                if backend == "index":
                    assert _answered_by(client, "index") == len(queries)
                    _follows_changes(service, client, size)
        finally:
            service.stop()
    for params, on_database, on_index in zip(queries, answers["fts"], answers["index"]):
        assert on_index["pagination"] == on_database["pagination"], params
        assert [m["id"] for m in on_index["items"]] == [m["id"] for m in on_database["items"]], params
    assert sum(answer["pagination"]["total"] > 0 for answer in answers["index"]) > 150  # searches that find
    sorts = {params.get("sort") for params in queries}
    assert {None, "likes", "trending", "updated"} <= sorts and any(p.get("page", 1) > 1 for p in queries)


def _follows_changes(service: Service, client: httpx.Client, size: int) -> None:
    """A sync adds models and changes known ones: the very next search shows them (the database answering), and
    the index, built again, answers the same."""
    hugging_face = {"source": "huggingface"}
    before = client.get("/api/models/search", params=hugging_face).json()["data"]
    synced = service.manage("sync_models", "--source", "huggingface", "--limit", "5", check=True,
                            LLM_MANAGER_OFFLINE="0")
    assert "5 added" in synced.stdout, synced.stdout
    database_answers = _answered_by(client, "database")
    after = client.get("/api/models/search", params=hugging_face).json()["data"]
    assert after["pagination"]["total"] == before["pagination"]["total"] + 5
    assert _answered_by(client, "database") == database_answers + 1
    wait_for(lambda: _indexed(client) == size + 5, 60, interval=0.2, what="the index built again")
    index_answers = _answered_by(client, "index")
    again = client.get("/api/models/search", params=hugging_face).json()["data"]
    assert _answered_by(client, "index") == index_answers + 1
    assert again == after
