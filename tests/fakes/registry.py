"""Debian's `docker-registry` (distribution 2.8) on 127.0.0.1, and pushing Ollama-format models to it."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import httpx

from tests.service import free_port, wait_for

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
REGISTRY_BINARY = shutil.which("docker-registry") or "/usr/bin/docker-registry"


def registry_available() -> bool:
    return Path(REGISTRY_BINARY).exists()


class Registry:
    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> "Registry":
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.root / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
        )
        log = open(self.root / "registry.log", "wb")
        self.process = subprocess.Popen([REGISTRY_BINARY, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_for(self._answers, 30, what="docker-registry")
        return self

    def _answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/v2/", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def push_blob(self, repository: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        with httpx.Client(base_url=self.url, timeout=60) as client:
            if client.head(f"/v2/{repository}/blobs/{digest}").status_code == 200:
                return digest
            started = client.post(f"/v2/{repository}/blobs/uploads/")
            assert started.status_code == 202, started.text
            location = started.headers["Location"]
            separator = "&" if "?" in location else "?"
            finished = client.put(f"{location}{separator}digest={digest}", content=data,
                                  headers={"Content-Type": "application/octet-stream"})
            assert finished.status_code == 201, finished.text
        return digest

    def push_ollama_model(self, model: str, tag: str, layers: list[tuple[str, bytes]], config: dict,
                          namespace: str = "library") -> dict:
        """Push an Ollama model: each layer is (media type suffix like 'model', bytes). Returns the manifest."""
        repository = f"{namespace}/{model}"
        config_bytes = json.dumps(config).encode()
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": self.push_blob(repository, config_bytes),
                       "size": len(config_bytes)},
            "layers": [
                {"mediaType": f"application/vnd.ollama.image.{kind}", "digest": self.push_blob(repository, data),
                 "size": len(data)}
                for kind, data in layers
            ],
        }
        response = httpx.put(f"{self.url}/v2/{repository}/manifests/{tag}", content=json.dumps(manifest).encode(),
                             headers={"Content-Type": MANIFEST_TYPE}, timeout=30)
        assert response.status_code == 201, response.text
        return manifest
