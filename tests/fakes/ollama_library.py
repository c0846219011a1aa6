"""A stand-in for ollama.com's library pages, written by us with the markup hooks of the real ones.

Listing and search pages hold `li[x-test-model]` entries with `[x-test-model-title]`
(its `title` is the name), the description `<p>`, `[x-test-capability]`,
`[x-test-size]`, `[x-test-pull-count]`, `[x-test-tag-count]` and `[x-test-updated]`;
tags pages link each tag as `/library/{model}:{tag}`; a model's own page `/library/{model}` carries
`[x-test-model-name]`, the summary in `span#summary-content` and the same capability, size, pull-count
and updated hooks. A model made with `listed=False` has its page but is in no listing or search, as
happens on the real site to models a search ranks low. With `fixtures_dir` it serves
the captured pages of the real site instead (see ../shared/fixtures/ollama-com).
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from tests.fakes import serve_in_thread, shut_down


@dataclass
class LibraryModel:
    name: str
    description: str
    capabilities: list[str] = field(default_factory=list)
    sizes: list[str] = field(default_factory=list)
    pulls: str = "1K"
    tags: list[str] = field(default_factory=lambda: ["latest"])
    updated: str = "2 weeks ago"
    listed: bool = True


def _entry(model: LibraryModel) -> str:
    spans = "".join(
        f'<span x-test-capability class="rounded-md bg-indigo-50 px-2">{html.escape(c)}</span>' for c in model.capabilities
    ) + "".join(f'<span x-test-size class="rounded-md bg-[#ddf4ff] px-2">{html.escape(s)}</span>' for s in model.sizes)
    return f"""
    <li x-test-model class="flex items-baseline border-b py-6">
      <a href="/library/{html.escape(model.name)}" class="group w-full space-y-5">
        <div x-test-model-title title="{html.escape(model.name)}" class="flex flex-col">
          <h2 class="truncate text-xl"><div class="flex"><span class="truncate">{html.escape(model.name)}</span></div></h2>
          <p class="max-w-lg break-words text-md">{html.escape(model.description)}</p>
        </div>
        <div class="flex flex-col space-y-2"><div class="flex flex-wrap space-x-2">{spans}</div>
          <p class="my-4 flex space-x-5 text-[13px]">
            <span class="flex items-center"><span x-test-pull-count>{model.pulls}</span><span class="hidden sm:flex">&nbsp;Pulls</span></span>
            <span class="flex items-center"><span x-test-tag-count>{len(model.tags)}</span><span class="hidden sm:flex">&nbsp;Tags</span></span>
            <span class="flex items-center"><span class="hidden sm:flex">Updated&nbsp;</span><span x-test-updated>{model.updated}</span></span>
          </p>
        </div>
      </a>
    </li>"""


def listing_page(models: list[LibraryModel]) -> str:
    entries = "".join(_entry(model) for model in models)
    return f"""<!doctype html><html><head><title>Ollama Library</title></head><body>
    <div x-test-repos id="repo"><ul role="list" class="grid grid-cols-1 gap-y-3">{entries}</ul></div></body></html>"""


def model_page(model: LibraryModel) -> str:
    hooks = "".join(f'<span x-test-capability class="rounded-md px-2">{html.escape(c)}</span>' for c in model.capabilities)
    hooks += "".join(f'<span x-test-size class="rounded-md px-2">{html.escape(s)}</span>' for s in model.sizes)
    return f"""<!doctype html><html><head><title>{html.escape(model.name)}</title>
    <meta name="description" content="{html.escape(model.description)}"/></head><body><main>
    <div class="flex"><a x-test-model-name href="/library/{html.escape(model.name)}" title="{html.escape(model.name)}">
    {html.escape(model.name)}</a></div>
    <p class="flex space-x-5"><span><span x-test-pull-count>{model.pulls}</span> Downloads</span>
    <span>Updated <span x-test-updated>{model.updated}</span></span></p>
    <div id="summary" class="flex flex-col"><h2 id="summary-display"><span id="summary-content">
      {html.escape(model.description)}
    </span></h2><div id="summary-edit-form" class="hidden"><form><textarea name="summary">{html.escape(model.description)}
    </textarea></form></div></div>
    <div class="flex flex-wrap space-x-2">{hooks}</div></main></body></html>"""


def tags_page(model: LibraryModel) -> str:
    rows = "".join(
        f"""<div class="group px-4 py-3"><a href="/library/{model.name}:{tag}" class="md:hidden flex">
        <span class="group-hover:underline">{model.name}:{tag}</span></a>
        <div class="hidden md:flex"><span class="col-span-6"><a href="/library/{model.name}:{tag}">{model.name}:{tag}</a>
        </span><p class="col-span-2">1.3GB</p></div></div>"""
        for tag in model.tags
    )
    return f"<!doctype html><html><body><section>{rows}</section></body></html>"


class FakeOllamaLibrary:
    def __init__(self, models: list[LibraryModel] | None = None, fixtures_dir: Path | None = None):
        self.models = {model.name: model for model in models or []}
        self.fixtures_dir = fixtures_dir
        self.requests: list[str] = []
        self.delay_seconds = 0.0
        self._server: ThreadingHTTPServer | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, port: int = 0) -> "FakeOllamaLibrary":
        library = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                library.requests.append(self.path)
                if library.delay_seconds:
                    time.sleep(library.delay_seconds)
                status, body = library.page(self.path)
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = serve_in_thread(Handler, port)
        self.port = self._server.server_address[1]
        return self

    def stop(self) -> None:
        shut_down(self._server)
        self._server = None

    def page(self, raw_path: str) -> tuple[int, str]:
        parts = urlsplit(raw_path)
        path, query = unquote(parts.path), parse_qs(parts.query)
        if self.fixtures_dir:
            return self._fixture_page(path, query)
        if path in ("/library", "/search"):
            models = [model for model in self.models.values() if model.listed]
            if "q" in query:
                needle = query["q"][0].lower()
                models = [m for m in models if needle in m.name.lower() or needle in m.description.lower()]
            if "c" in query:
                models = [m for m in models if query["c"][0] in m.capabilities]
            return 200, listing_page(models)
        if path.startswith("/library/") and path.endswith("/tags"):
            model = self.models.get(path[len("/library/"):-len("/tags")])
            return (200, tags_page(model)) if model else (404, "<html>Not found</html>")
        if path.startswith("/library/"):
            model = self.models.get(path[len("/library/"):])
            return (200, model_page(model)) if model else (404, "<html>Not found</html>")
        return 404, "<html>Not found</html>"

    def _fixture_page(self, path: str, query: dict) -> tuple[int, str]:
        root = self.fixtures_dir
        if path in ("/library", "/search"):
            if "q" in query:
                name = f"listing-search-{query['q'][0]}.html"
                file = root / "library" / name
                return 200, (file if file.exists() else root / "library" / "listing-search-no-results.html").read_text()
            sort = query.get("sort", ["popular"])[0]
            return 200, (root / "library" / f"listing-{sort}.html").read_text()
        if path.startswith("/library/") and path.endswith("/tags"):
            file = root / "models" / path[len("/library/"):-len("/tags")] / "tags.html"
            return (200, file.read_text()) if file.exists() else (404, "<html>Not found</html>")
        if path.startswith("/library/"):
            file = root / "models" / path[len("/library/"):] / "details.html"
            return (200, file.read_text()) if file.exists() else (404, "<html>Not found</html>")
        return 404, "<html>Not found</html>"
