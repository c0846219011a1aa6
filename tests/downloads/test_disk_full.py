"""The disk filling up mid-download: a small tmpfs (mounted by the test, as root) under the models directory."""

from __future__ import annotations

import hashlib
import os
import subprocess

import pytest

from tests import world
from tests.downloads.conftest import BIG_SHA256
from tests.downloads.test_downloads_api import start, task_of, wait_status
from tests.envelope import assert_success
from tests.service import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


def _fill(directory) -> int:
    """Write a filler file until the device refuses; returns how many bytes it holds."""
    written = 0
    with open(directory / "filler", "wb", buffering=0) as filler:
        chunk = b"\0" * (64 * 1024)
        try:
            while True:
                written += filler.write(chunk)
        except OSError:
            return written


def test_a_full_disk_fails_the_download_keeping_its_bytes_and_resume_completes_it(start_service, throttled,
                                                                                  tmp_path):
    data_dir = tmp_path / "service0"
    models = data_dir / "models"
    models.mkdir(parents=True)
    # Room for the 8 MiB model and a little more: the start's space check passes, then a filler takes the rest.
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=10m", "tmpfs", str(models)], check=True)
    try:
        service = start_service({"LLM_MANAGER_DOWNLOAD_PART_THRESHOLD_MB": "1",
                                 "LLM_MANAGER_DOWNLOAD_DISK_MARGIN_GB": "0"})
        assert service.data_dir == data_dir
        blobs = models / "huggingface/hub/models--test-org--big-model/blobs"
        with service.client() as client:
            task = assert_success(start(client, "test-org/big-model"))["task"]
            wait_for(lambda: task_of(client, task["id"])["downloaded_bytes"] > 1024 * 1024, 30, what="1 MiB")
            assert _fill(models) > 0
            failed = wait_status(client, task["id"], {"failed", "completed"}, timeout=30)
            assert failed["status"] == "failed" and failed["error_code"] == "INSUFFICIENT_STORAGE", failed
            assert "no space left" in failed["error"]
            kept = failed["downloaded_bytes"]
            assert 1024 * 1024 < kept < len(world.BIG_WEIGHTS)
            (weights,) = [f for f in failed["files"] if f["path"] == "model.safetensors"]
            assert weights["status"] == "failed" and weights["error"] == failed["error"]
            assert 1024 * 1024 < weights["downloaded_bytes"] <= kept
            assert list(blobs.glob("*.llmpart")), "the partial bytes are kept"

            (models / "filler").unlink()
            sent_before_resume = throttled.bytes_sent[BIG_SHA256]
            assert_success(client.put(f"/api/downloads/{task['id']}/resume"))
            done = wait_status(client, task["id"], {"completed", "failed"}, timeout=60)
            assert done["status"] == "completed", done
        assert hashlib.sha256((blobs / BIG_SHA256).read_bytes()).hexdigest() == BIG_SHA256
        assert not list(blobs.glob("*.llmpart*"))
        # The resume fetched what was missing, not the whole file again.
        assert throttled.bytes_sent[BIG_SHA256] - sent_before_resume < len(world.BIG_WEIGHTS) - kept + 1024 * 1024
        assert "Traceback" not in service.log()
        service.stop()
    finally:
        subprocess.run(["umount", "-l", str(models)], check=False)
