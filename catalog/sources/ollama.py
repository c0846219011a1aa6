"""The Ollama library (HTML pages at LLM_MANAGER_OLLAMA_LIBRARY) and registry (LLM_MANAGER_OLLAMA_REGISTRY).

There is no search API: the library's listing, search and tags pages are read
with an HTML parser, using the `x-test-*` hooks of their markup. Sizes and
details come from the registry: the manifest's layer sizes and the config blob.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urlsplit

import httpx
from django.conf import settings

from catalog.sources import DownloadPlan, RemoteFile, RemoteModel, RemoteModelNotFound, SourceError

SOURCE = "ollama"
MANIFEST_ACCEPT = "application/vnd.docker.distribution.manifest.v2+json"
NAME_PATTERN = re.compile(r"^(?:(?P<namespace>[a-z0-9][a-z0-9._-]*)/)?(?P<model>[a-z0-9][a-z0-9._-]*)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9._-]{0,127}))?$")
CAPABILITY_TYPES = ("embedding", "vision", "tools", "thinking")
TIMEOUT = httpx.Timeout(10.0, connect=3.0)


@dataclass(frozen=True)
class OllamaName:
    namespace: str
    model: str
    tag: str

    @property
    def model_id(self) -> str:
        prefix = "" if self.namespace == "library" else f"{self.namespace}/"
        return f"{prefix}{self.model}:{self.tag}"


def parse_name(name: str) -> OllamaName:
    """`llama3.2:1b`, `library/llama3.2`, `user/model:tag` → its parts, with Ollama's defaults."""
    match = NAME_PATTERN.match(name.strip())
    if not match:
        raise RemoteModelNotFound(f"{name!r} is not a valid Ollama model name")
    return OllamaName(match["namespace"] or "library", match["model"], match["tag"] or "latest")


def parse_pull_count(text: str) -> int:
    """`1.2M` → 1200000, `386.8K` → 386800, `22` → 22."""
    text = text.strip().upper().replace(",", "")
    multiplier = {"K": 1e3, "M": 1e6, "B": 1e9}.get(text[-1:], 1)
    number = text[:-1] if multiplier != 1 else text
    try:
        return int(float(number) * multiplier)
    except ValueError:
        return 0


@dataclass
class LibraryEntry:
    name: str = ""
    description: str = ""
    capabilities: list[str] = field(default_factory=list)
    sizes: list[str] = field(default_factory=list)
    pulls: int = 0
    tag_count: int = 0
    updated: str = ""


class LibraryPageParser(HTMLParser):
    """Collects the `li[x-test-model]` entries of a listing or search page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.entries: list[LibraryEntry] = []
        self._current: LibraryEntry | None = None
        self._li_depth = 0
        self._capture: str | None = None
        self._in_title = False
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        names = dict(attrs)
        if tag == "li" and "x-test-model" in names:
            self._current = LibraryEntry()
            self.entries.append(self._current)
            self._li_depth = 1
            return
        if self._current is None:
            return
        if tag == "li":
            self._li_depth += 1
        if "x-test-model-title" in names:
            self._current.name = names.get("title") or ""
            self._in_title = True
        elif tag == "p" and self._in_title and not self._current.description:
            self._start("description")
        for hook in ("x-test-capability", "x-test-size", "x-test-pull-count", "x-test-tag-count", "x-test-updated"):
            if hook in names:
                self._start(hook)

    def _start(self, what: str):
        self._capture = what
        self._text = []

    def handle_data(self, data):
        if self._capture:
            self._text.append(data)

    def handle_endtag(self, tag):
        if self._current is None:
            return
        if self._capture and tag in ("span", "p"):
            self._store(" ".join("".join(self._text).split()))
            self._capture = None
        if tag == "div" and self._in_title and self._current.description:
            self._in_title = False
        if tag == "li":
            self._li_depth -= 1
            if self._li_depth == 0:
                self._current = None
                self._in_title = False

    def _store(self, text: str):
        entry = self._current
        if self._capture == "description":
            entry.description = text
            self._in_title = False
        elif self._capture == "x-test-capability":
            entry.capabilities.append(text.lower())
        elif self._capture == "x-test-size":
            entry.sizes.append(text.lower())
        elif self._capture == "x-test-pull-count":
            entry.pulls = parse_pull_count(text)
        elif self._capture == "x-test-tag-count":
            entry.tag_count = parse_pull_count(text)
        elif self._capture == "x-test-updated":
            entry.updated = text


class TagsPageParser(HTMLParser):
    """Collects the tags of `/library/{model}/tags`: links to `/library/{model}:{tag}`."""

    def __init__(self, model: str):
        super().__init__(convert_charrefs=True)
        self.prefix = f"/library/{model}:"
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        href = dict(attrs).get("href") or ""
        if tag == "a" and href.startswith(self.prefix):
            name = href[len(self.prefix):]
            if name and name not in self.tags:
                self.tags.append(name)


def _get(url: str, **kwargs) -> httpx.Response:
    try:
        response = httpx.get(url, timeout=TIMEOUT, follow_redirects=True, **kwargs)
    except httpx.HTTPError as exc:
        raise SourceError(f"Ollama is unreachable at {url}: {exc}") from exc
    return response


def _library_entries(path: str, params: dict) -> list[LibraryEntry]:
    response = _get(f"{settings.OLLAMA_LIBRARY}{path}", params=params)
    if response.status_code != 200:
        raise SourceError(f"The Ollama library answered {response.status_code} for {path}")
    parser = LibraryPageParser()
    parser.feed(response.text)
    return [entry for entry in parser.entries if entry.name]


def entry_to_remote_model(entry: LibraryEntry) -> RemoteModel:
    model_type = next((c for c in CAPABILITY_TYPES if c in entry.capabilities), "text")
    return RemoteModel(
        model_id=entry.name,
        source=SOURCE,
        name=entry.name,
        description=entry.description,
        model_type=model_type,
        parameters=entry.sizes[0].upper() if len(entry.sizes) == 1 else "",
        downloads=entry.pulls,
        tags=[*entry.capabilities, *entry.sizes],
        details={"capabilities": entry.capabilities, "sizes": entry.sizes, "tag_count": entry.tag_count,
                 "updated": entry.updated},
    )


def search(query: str = "", model_type: str = "", sort: str = "popular", limit: int = 50) -> list[RemoteModel]:
    params = {"q": query} if query else {"sort": "newest" if sort == "updated" else "popular"}
    if model_type in CAPABILITY_TYPES:
        params["c"] = model_type
    models = [entry_to_remote_model(entry) for entry in _library_entries("/library", params)]
    if model_type:
        models = [m for m in models if m.model_type == model_type or model_type in m.tags]
    return models[:limit]


def list_tags(model: str) -> list[str]:
    response = _get(f"{settings.OLLAMA_LIBRARY}/library/{model}/tags")
    if response.status_code == 404:
        raise RemoteModelNotFound(f"{model} is not in the Ollama library")
    if response.status_code != 200:
        raise SourceError(f"The Ollama library answered {response.status_code} for {model}")
    parser = TagsPageParser(model)
    parser.feed(response.text)
    return parser.tags


def fetch_manifest_bytes(name: OllamaName) -> bytes:
    url = f"{settings.OLLAMA_REGISTRY}/v2/{name.namespace}/{name.model}/manifests/{name.tag}"
    response = _get(url, headers={"Accept": MANIFEST_ACCEPT})
    if response.status_code == 404:
        raise RemoteModelNotFound(f"{name.model_id} was not found in the Ollama registry")
    if response.status_code != 200:
        raise SourceError(f"The Ollama registry answered {response.status_code} for {name.model_id}")
    return response.content


def fetch_manifest(name: OllamaName) -> dict:
    try:
        return json.loads(fetch_manifest_bytes(name))
    except ValueError as exc:
        raise SourceError(f"The Ollama registry sent a manifest that is not JSON for {name.model_id}") from exc


def blob_url(name: OllamaName, digest: str) -> str:
    return f"{settings.OLLAMA_REGISTRY}/v2/{name.namespace}/{name.model}/blobs/{digest}"


def download_plan(model_id: str) -> DownloadPlan:
    """The config blob and layers of `model[:tag]`, each verified by its sha256 digest."""
    name = parse_name(model_id)
    raw = fetch_manifest_bytes(name)
    try:
        manifest = json.loads(raw)
        blobs = [manifest["config"], *manifest.get("layers", [])]
        files = [
            RemoteFile(path=blob["digest"], url=blob_url(name, blob["digest"]), size=int(blob["size"]),
                       sha256=str(blob["digest"]).removeprefix("sha256:"), media_type=blob.get("mediaType", ""))
            for blob in blobs
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise SourceError(f"The Ollama registry sent a manifest we cannot read for {model_id}: {exc}") from exc
    return DownloadPlan(model_id=name.model_id, source=SOURCE, revision=name.tag, files=files, manifest=raw,
                        registry_host=urlsplit(settings.OLLAMA_REGISTRY).netloc)


def fetch_blob_json(name: OllamaName, digest: str) -> dict:
    response = _get(blob_url(name, digest))
    if response.status_code != 200:
        raise SourceError(f"The Ollama registry answered {response.status_code} for blob {digest}")
    try:
        return response.json()
    except ValueError:
        return {}


def model_info(model_id: str) -> RemoteModel:
    """A `model[:tag]` from the registry (size, family, quantization), described by the library when it answers."""
    name = parse_name(model_id)
    manifest = fetch_manifest(name)
    layers = manifest.get("layers") or []
    config = fetch_blob_json(name, manifest["config"]["digest"]) if manifest.get("config") else {}
    size = sum(int(layer.get("size") or 0) for layer in layers) + int((manifest.get("config") or {}).get("size") or 0)
    family = config.get("model_family") or ""
    details = {
        "family": family,
        "families": config.get("model_families") or ([family] if family else []),
        "format": config.get("model_format") or "",
        "quantization": config.get("file_type") or "",
        "layers": [{"media_type": layer.get("mediaType"), "digest": layer.get("digest"), "size": layer.get("size")}
                   for layer in layers],
    }
    model = RemoteModel(
        model_id=name.model_id,
        source=SOURCE,
        name=name.model_id,
        model_type="text",
        parameters=str(config.get("model_type") or "").upper(),
        size_bytes=size,
        tags=[t for t in (family, details["quantization"].lower()) if t],
        details=details,
    )
    _describe_from_library(model, name)
    return model


def _describe_from_library(model: RemoteModel, name: OllamaName) -> None:
    if name.namespace != "library":
        return
    try:
        entries = _library_entries("/library", {"q": name.model})
    except SourceError:
        return  # the registry alone is enough to describe the model
    for entry in entries:
        if entry.name == name.model:
            described = entry_to_remote_model(entry)
            model.description = described.description
            model.model_type = described.model_type
            model.downloads = described.downloads
            model.tags = list(dict.fromkeys([*described.tags, *model.tags]))
            model.details["capabilities"] = described.details["capabilities"]
            return
