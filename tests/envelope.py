"""Assertions on the contract's response envelope."""

import re

ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def assert_success(response, status: int = 200):
    """The success envelope with `status`; returns `data`."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"success", "message", "data", "code", "timestamp"}, body
    assert body["success"] is True and body["code"] == status
    assert ISO_Z.match(body["timestamp"])
    return body["data"]


def assert_error(response, status: int, code: str):
    """The error envelope with `status` and error `code`, and no traceback; returns the body."""
    assert response.status_code == status, response.text
    body = response.json()
    assert {"success", "message", "error", "timestamp"} <= set(body), body
    assert body["success"] is False and body["error"] == code and body["message"]
    assert ISO_Z.match(body["timestamp"])
    assert "Traceback" not in response.text
    return body
