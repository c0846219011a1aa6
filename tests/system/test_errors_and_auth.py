"""The contract's error envelope on every failure path, and the optional API key."""

import sqlite3

import pytest

from tests.envelope import assert_error


def test_unknown_api_path_is_a_404_envelope(api):
    assert_error(api.get("/api/no-such-thing"), 404, "NOT_FOUND")
    assert_error(api.post("/api/system/nothing/here", json={}), 404, "NOT_FOUND")


def test_wrong_method_is_a_405_envelope(api):
    assert_error(api.post("/api/system/resources"), 405, "METHOD_NOT_ALLOWED")
    assert_error(api.delete("/api/downloads/list"), 405, "METHOD_NOT_ALLOWED")


@pytest.mark.parametrize(
    "query, field",
    [("page=abc", "page"), ("page=0", "page"), ("page_size=1000", "page_size"), ("page_size=-1", "page_size")],
)
def test_bad_pagination_is_a_validation_error_naming_the_field(api, query, field):
    body = assert_error(api.get(f"/api/downloads/list?{query}"), 400, "VALIDATION_ERROR")
    assert body["message"].startswith(f"{field}:")


def test_malformed_json_body_is_a_400(api):
    response = api.post(
        "/api/models/sync", content=b'{"source": "ollama", ', headers={"Content-Type": "application/json"}
    )
    assert_error(response, 400, "INVALID_JSON")


def test_unhandled_exception_is_a_500_envelope_logged_with_traceback(start_service):
    service = start_service()
    # Break the database under the running service: the downloads table vanishes.
    with sqlite3.connect(service.data_dir / "llm_manager.sqlite3") as connection:
        connection.execute("DROP TABLE downloads_downloadfile")
        connection.execute("DROP TABLE downloads_downloadtask")
    with service.client() as client:
        assert_error(client.get("/api/downloads/list"), 500, "INTERNAL_ERROR")
        # The service lives on.
        assert client.get("/api/health").status_code == 200
    log = (service.data_dir / "logs" / "service.log").read_text()
    assert "Traceback" in log and "downloads_downloadtask" in log


def test_api_key_protects_api_v1_and_ws_but_not_health(start_service):
    service = start_service({"LLM_MANAGER_API_KEY": "s3cret-key"})
    with service.client() as client:
        assert_error(client.get("/api/system/load"), 401, "UNAUTHORIZED")
        assert_error(client.get("/api/system/load", headers={"X-API-Key": "wrong"}), 401, "UNAUTHORIZED")
        assert_error(client.get("/api/system/load", headers={"Authorization": "Bearer wrong"}), 401, "UNAUTHORIZED")
        assert client.get("/api/system/load", headers={"Authorization": "Bearer s3cret-key"}).status_code == 200
        assert client.get("/api/system/load", headers={"X-API-Key": "s3cret-key"}).status_code == 200
        assert client.get("/health").status_code == 200
        assert client.get("/api/health").status_code == 200
        v1 = client.get("/v1/models")
        assert v1.status_code == 401 and v1.json()["error"]["code"] == "UNAUTHORIZED"
        # As the OpenAI SDK sends it.
        listed = client.get("/v1/models", headers={"Authorization": "Bearer s3cret-key"})
        assert listed.status_code == 200 and listed.json()["object"] == "list"
        assert_error(client.post("/api/chat/deploy_x", json={}), 401, "UNAUTHORIZED")
        assert_error(client.post("/api/chat/deploy_x", json={"messages": [{"role": "user", "content": "x"}]},
                                 headers={"X-API-Key": "s3cret-key"}), 404, "DEPLOYMENT_NOT_FOUND")


def test_api_key_protects_the_websocket(start_service):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    service = start_service({"LLM_MANAGER_API_KEY": "s3cret-key"})
    ws_url = service.url.replace("http://", "ws://") + "/ws/downloads"
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url, open_timeout=10)
    assert refused.value.response.status_code == 403
    with connect(ws_url, additional_headers={"X-API-Key": "s3cret-key"}, open_timeout=10) as socket:
        assert '"snapshot"' in socket.recv(timeout=10)
