"""Full-text search on PostgreSQL (a stored tsvector, a GIN index) finds what SQLite's FTS5 finds: the same
synthetic catalog on both, the same searches through the API, the same pages and totals (the databases answering,
not the search index, which test_search_index compares with them)."""

from __future__ import annotations

import httpx

from tests.postgres import scratch_database
from tests.service import Service
from tests.synthetic_catalog import fill, searches


def test_postgresql_and_sqlite_full_text_search_answer_alike(tmp_path, sources_env):
    services = []
    with scratch_database() as url:
        try:
            answers = {}
            for database, env in (("sqlite", {}), ("postgresql", {"DATABASE_URL": url})):
                env = {**sources_env, **env, "LLM_MANAGER_DATA_DIR": str(tmp_path / database),
                       "LLM_MANAGER_OFFLINE": "1", "LLM_MANAGER_SEARCH_BACKEND": "fts"}
                assert fill(env, 3000) >= 3000
                services.append(Service(tmp_path / database, env=env, args=["--no-worker"]).start())
                with httpx.Client(base_url=services[-1].url, timeout=30) as client:
                    answers[database] = [client.get("/api/models/search", params=params).json()["data"]
                                         for params in searches(150, seed=5)]
        finally:
            for service in services:
                service.stop()
    for params, on_sqlite, on_postgres in zip(searches(150, seed=5), answers["sqlite"], answers["postgresql"]):
        assert on_sqlite["pagination"]["total"] == on_postgres["pagination"]["total"], params
        assert [m["id"] for m in on_sqlite["items"]] == [m["id"] for m in on_postgres["items"]], params
    assert sum(answer["pagination"]["total"] > 0 for answer in answers["sqlite"]) > 100  # searches that find
    phrase = next(a for p, a in zip(searches(150, seed=5), answers["sqlite"]) if "-" in p.get("query", ""))
    assert phrase["items"] and all("-" in m["id"] or ":" in m["id"] for m in phrase["items"])
