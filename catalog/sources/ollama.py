"""The Ollama library (HTML pages at LLM_MANAGER_OLLAMA_LIBRARY) and registry (LLM_MANAGER_OLLAMA_REGISTRY).

There is no search API: the library's listing, search and model pages are read
with an HTML parser, using the `x-test-*` hooks of their markup. Sizes and
details come from the registry: the manifest's layer sizes and the config blob.
Downloads land in Ollama's own layout (`manifests/{host}/{namespace}/{model}/{tag}`, the raw manifest,
and `blobs/sha256-{hex}`), so an Ollama daemon given the directory sees the model.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.db.models import QuerySet

from catalog.sources import (
    Claim,
    DownloadPlan,
    InvalidModelId,
    LocalCopy,
    ModelFileChoiceError,
    ModelFiles,
    ModelSource,
    RemoteFile,
    RemoteModel,
    RemoteModelNotFound,
    SourceError,
    StoredFile,
    StoredModel,
)
from core.digests import file_digest
from core.paths import InvalidFileName, safe_relative_path

MANIFEST_ACCEPT = "application/vnd.docker.distribution.manifest.v2+json"
NAME_PATTERN = re.compile(r"^(?:(?P<namespace>[a-z0-9][a-z0-9._-]*)/)?(?P<model>[a-z0-9][a-z0-9._-]*)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9._-]{0,127}))?$")
CAPABILITY_TYPES = ("embedding", "vision", "tools", "thinking")
MODEL_MEDIA_TYPE = "application/vnd.ollama.image.model"
TEMPLATE_MEDIA_TYPE = "application/vnd.ollama.image.template"
_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")
_HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*(:\d{1,5})?$")
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
    match = NAME_PATTERN.fullmatch(name)
    if not match or ".." in name:
        raise InvalidModelId(f"{name!r} is not an Ollama model name ([namespace/]model[:tag])")
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


class ModelPageParser(HTMLParser):
    """The model's own page, `/library/{model}`: its summary, capabilities, sizes, pulls and last update."""

    HOOKS = ("x-test-capability", "x-test-size", "x-test-pull-count", "x-test-updated")

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.entry = LibraryEntry()
        self._capture: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        names = dict(attrs)
        if tag == "span" and names.get("id") == "summary-content":
            self._capture, self._text = "summary", []
        if "x-test-model-name" in names and not self.entry.name:
            self.entry.name = names.get("title") or ""
        for hook in self.HOOKS:
            if hook in names:
                self._capture, self._text = hook, []

    def handle_data(self, data):
        if self._capture:
            self._text.append(data)

    def handle_endtag(self, tag):
        if not self._capture or tag != "span":
            return
        text = " ".join("".join(self._text).split())
        entry, what = self.entry, self._capture
        self._capture = None
        if what == "summary":
            entry.description = entry.description or text
        elif what == "x-test-capability":
            entry.capabilities.append(text.lower())
        elif what == "x-test-size":
            entry.sizes.append(text.lower())
        elif what == "x-test-pull-count":
            entry.pulls = parse_pull_count(text)
        elif what == "x-test-updated":
            entry.updated = text


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
        source=Ollama.name,
        name=entry.name,
        description=entry.description,
        model_type=model_type,
        parameters=entry.sizes[0].upper() if len(entry.sizes) == 1 else "",
        downloads=entry.pulls,
        tags=[*entry.capabilities, *entry.sizes],
        details={"capabilities": entry.capabilities, "sizes": entry.sizes, "tag_count": entry.tag_count,
                 "updated": entry.updated},
    )


def search_library(query: str, model_type: str, sort: str, limit: int) -> list[RemoteModel]:
    params = {"q": query} if query else {"sort": "newest" if sort == "updated" else "popular"}
    if model_type in CAPABILITY_TYPES:
        params["c"] = model_type
    models = [entry_to_remote_model(entry) for entry in _library_entries("/library", params)]
    if model_type:
        models = [m for m in models if m.model_type == model_type or model_type in m.tags]
    return models[:limit]


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


def fetch_blob_json(name: OllamaName, digest: str) -> dict:
    response = _get(blob_url(name, digest))
    if response.status_code != 200:
        raise SourceError(f"The Ollama registry answered {response.status_code} for blob {digest}")
    try:
        return response.json()
    except ValueError:
        return {}


def library_page(model: str) -> LibraryEntry | None:
    """What the library's page of `model` says of it; None where there is no such page."""
    response = _get(f"{settings.OLLAMA_LIBRARY}/library/{model}")
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise SourceError(f"The Ollama library answered {response.status_code} for {model}")
    parser = ModelPageParser()
    parser.feed(response.text)
    parser.entry.name = parser.entry.name or model
    return parser.entry


class Ollama(ModelSource):
    name = "ollama"
    label = "Ollama"
    trending_sort = "downloads"  # the library's order is by pulls

    def claims(self, model_id: str) -> Claim:
        if ":" in model_id:
            return Claim.CERTAIN
        return Claim.LIKELY if "/" not in model_id else Claim.NO

    def canonical_id(self, model_id: str) -> str:
        return parse_name(model_id).model_id

    def search(self, *, query: str = "", model_type: str = "", sort: str = "downloads",
               limit: int = 50) -> list[RemoteModel]:
        return search_library(query, model_type, sort, limit)

    def model_info(self, *, model_id: str) -> RemoteModel:
        """A `model[:tag]` from the registry (size, family, quantization), merged with what its library page says
        (description, pulls, capabilities, last update) when the library has one."""
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
        model = RemoteModel(model_id=name.model_id, source=self.name, name=name.model_id, model_type="text",
                            parameters=str(config.get("model_type") or "").upper(), size_bytes=size,
                            tags=[t for t in (family, details["quantization"].lower()) if t], details=details)
        if name.namespace == "library":
            _merge_library_page(model, name)
        return model

    def download_plan(self, *, model_id: str, revision: str, include: list[str]) -> DownloadPlan:
        """The config blob and layers of `model[:tag]`, each verified by its sha256 digest."""
        name = parse_name(model_id)
        raw = fetch_manifest_bytes(name)
        try:
            manifest = json.loads(raw)
            blobs = [manifest["config"], *manifest.get("layers", [])]
            files = [
                RemoteFile(path=blob["digest"], url=blob_url(name, blob["digest"]), size=int(blob["size"]),
                           sha256=str(blob["digest"]).removeprefix("sha256:"), media_type=blob.get("mediaType", ""),
                           destination=self._blob(blob["digest"]))
                for blob in blobs
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise SourceError(f"The Ollama registry sent a manifest we cannot read for {model_id}: {exc}") from exc
        return DownloadPlan(model_id=name.model_id, source=self.name, revision=name.tag, files=files, manifest=raw,
                            storage_path=self._manifest_path(urlsplit(settings.OLLAMA_REGISTRY).netloc, name))

    def put_in_place(self, *, model: StoredModel) -> None:
        manifest = Path(model.storage_path)
        manifest.parent.mkdir(parents=True, exist_ok=True)
        manifest.write_text(model.manifest)

    def remove(self, *, model: StoredModel, in_use: Callable[[Path], bool]) -> list[str]:
        """Blobs are shared between models: those another download holds stay."""
        removed = []
        for file in model.files:
            if file.destination and not in_use(Path(file.destination)):
                Path(file.destination).unlink(missing_ok=True)
                removed.append(file.destination)
        if model.storage_path:
            Path(model.storage_path).unlink(missing_ok=True)
            removed.append(model.storage_path)
        return removed

    def model_files(self, *, model: StoredModel, file: str = "", quantization: str = "") -> ModelFiles:
        if file or quantization:
            raise ModelFileChoiceError("VALIDATION_ERROR", f"{'file' if file else 'quantization'}: an Ollama model "
                                       "has one model file; its tag chooses the quantization (e.g. llama3.2:3b-q8_0)",
                                       [])
        model_layer = next((f for f in model.files if f.media_type == MODEL_MEDIA_TYPE), None)
        if model_layer is None:
            raise RemoteModelNotFound(f"{model.model_id} has no model layer")
        template = next((f for f in model.files if f.media_type == TEMPLATE_MEDIA_TYPE), None)
        return ModelFiles(model_id=model.model_id, source=self.name, format="gguf",
                          path=Path(model_layer.destination), weights_bytes=model_layer.size,
                          go_chat_template=Path(template.destination).read_text(errors="replace") if template else "")

    def find_local(self, *, path: Path | None = None, name: str = "") -> list[LocalCopy]:
        """Every model of an Ollama store (`OLLAMA_MODELS`, default ~/.ollama/models): each manifest under
        `manifests/{host}/{namespace}/{model}/{tag}`, its blobs checked against the sizes the manifest gives and
        the sha256 their names give."""
        root = path or settings.IMPORT_OLLAMA_MODELS
        found = []
        for manifest_path in sorted((root / "manifests").glob("*/*/*/*")):
            if not manifest_path.is_file():
                continue
            _, namespace, model, tag = manifest_path.relative_to(root / "manifests").parts
            try:
                name = parse_name(f"{namespace}/{model}:{tag}")
                text = manifest_path.read_text()
                manifest = json.loads(text)
                blobs = [manifest["config"], *manifest.get("layers", [])]
                files = [StoredFile(path=blob["digest"], destination=str(root / "blobs" / blob["digest"].replace(
                    ":", "-")), size=int(blob["size"]), media_type=blob.get("mediaType", "")) for blob in blobs]
            except (InvalidModelId, OSError, ValueError, KeyError, TypeError, AttributeError):
                continue  # not a manifest of Ollama's
            stored = StoredModel(model_id=name.model_id, source=self.name, revision=name.tag, commit=name.tag,
                                 storage_path=str(manifest_path), files=files, manifest=text)
            found.append(LocalCopy(model=stored, total_bytes=sum(f.size for f in files),
                                   problem=_blob_problem(files)))
        return found

    def categories(self, entries: QuerySet) -> list[tuple[str, int]]:
        """Capabilities (tools, vision, embedding, thinking; text when none), as the library lists them."""
        counts = Counter(capability for details in entries.values_list("details", flat=True)
                         for capability in (details or {}).get("capabilities") or ["text"])
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))

    def _blob(self, digest: str) -> Path:
        match = _DIGEST.fullmatch(digest)
        if not match:
            raise InvalidFileName(f"refused digest {digest!r}")
        return self.root() / "blobs" / f"sha256-{match[1]}"

    def _manifest_path(self, registry_host: str, name: OllamaName) -> Path:
        if not _HOST.fullmatch(registry_host):
            raise InvalidFileName(f"refused registry host {registry_host!r}")
        parts = [str(safe_relative_path(part)) for part in (name.namespace, name.model, name.tag)]
        return self.root() / "manifests" / registry_host / Path(*parts)


def _blob_problem(files: list[StoredFile]) -> str:
    """What is wrong with a stored model's blobs (missing, another size, other bytes than their digest), or nothing."""
    for file in files:
        blob = Path(file.destination)
        if not _DIGEST.fullmatch(file.path) or not blob.is_file():
            return f"blob {file.path} is missing"
        if blob.stat().st_size != file.size:
            return f"blob {file.path} has {blob.stat().st_size} bytes, the manifest says {file.size}"
        if f"sha256:{file_digest(blob, 'sha256')}" != file.path:
            return f"blob {file.path}: its bytes do not match its digest"
    return ""


def _merge_library_page(model: RemoteModel, name: OllamaName) -> None:
    try:
        entry = library_page(name.model)
    except SourceError:
        return  # the registry alone is enough to describe the model
    if entry is None:
        return
    described = entry_to_remote_model(entry)
    model.description = described.description or model.description
    model.model_type = described.model_type
    model.downloads = described.downloads
    model.tags = list(dict.fromkeys([*described.tags, *model.tags]))
    model.details.update(capabilities=entry.capabilities, sizes=entry.sizes, updated=entry.updated)


SOURCE = Ollama()
