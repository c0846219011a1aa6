"""An in-memory Tantivy index of the catalog, which answers searches in milliseconds at a million entries where the
databases' own full-text indexes take tens (SQLite) to hundreds (PostgreSQL) of milliseconds: most of their time
goes to counting the matches for `pagination.total`, which Tantivy does over compressed posting lists.

The database stays the truth. Triggers (catalog migration 0006) count every change to the catalog in
`catalog_searchversion`; the index answers a search only when it was built at the version the database holds at
that moment. Otherwise the database answers, and the index is built again in a background thread once the
catalog has been quiet for a moment. Each sort order is the database's own: a build reads every entry's position
in each order through the same ORDER BY as the database's search (ties by id, NULLs last), so pages and totals come
out as the database would give them (`tests/catalog/test_search_index.py` compares the two).
"""

from __future__ import annotations

import logging
import threading
import time
from array import array
from dataclasses import dataclass

import tantivy
from django.db import connection, transaction
from django.db.models import F, QuerySet

from catalog.models import CatalogModel, SearchVersion

logger = logging.getLogger(__name__)

ORDERINGS = {
    "downloads": "downloads",
    "likes": "likes",
    "updated": "updated_at",
    "trending": "trending_score",
}
# A build waits until the catalog has not changed for this long (a sync writes for a while), at most WAIT_LIMIT.
QUIET_SECONDS = 1.0
WAIT_LIMIT_SECONDS = 30.0
# Builds are paced: after one that took t seconds, the next starts no sooner than PAUSE_FACTOR × t later (a
# catalog that keeps changing costs the web server a fifth of a core at most); after a failed one, RETRY_SECONDS.
PAUSE_FACTOR = 4.0
RETRY_SECONDS = 60.0
# A search without words walks its sort order for its page when that reads at most about this many entries (a
# Python loop, ~0.1 µs an entry: half a millisecond); past that, Tantivy reads just the filter's entries and sorts
# them (~0.02 µs a match: 1.8 ms for 100,000).
WALK_LIMIT = 5_000


def in_sort_order(models: QuerySet, sort: str) -> QuerySet:
    """`models` best first by `sort`, ties by id (newest first), entries without a value last."""
    # SQLite already sorts NULLs last when descending, and only then can an index give the order.
    order = F(ORDERINGS[sort]).desc(nulls_last=True if connection.vendor != "sqlite" else None)
    return models.order_by(order, "-id")


def catalog_version() -> int | None:
    """How many changes the catalog has seen, counted by the database's triggers; None where nothing counts them."""
    return SearchVersion.objects.filter(id=1).values_list("version", flat=True).first()


def _analyzer() -> tantivy.TextAnalyzer:
    """Words as FTS5's unicode61 tokenizer and the PostgreSQL vector (catalog migration 0005) cut them: runs of
    letters and digits, lower-cased, however long."""
    return tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple()).filter(tantivy.Filter.lowercase()).build()


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    # The searchable fields as values of one field: a word may be in any of them, a phrase within one.
    builder.add_text_field("text", tokenizer_name="words", index_option="position")
    builder.add_text_field("source", tokenizer_name="raw", index_option="basic")
    builder.add_text_field("model_type", tokenizer_name="raw", index_option="basic")
    for sort in ORDERINGS:
        builder.add_integer_field(f"rank_{sort}", fast=True)
    return builder.build()


ANALYZER = _analyzer()
SCHEMA = _schema()


def _words(tags) -> str:
    return " ".join(str(tag) for tag in tags) if isinstance(tags, list) else str(tags or "")


def _word_queries(query: str) -> list[tantivy.Query]:
    """Each word of the query as a prefix phrase: `llama3.2 chat` → the phrase `llama3 2*` and `chat*`."""
    queries = []
    for word in query.split():
        tokens = ANALYZER.analyze(word)  # letters and digits only: nothing a regex would read as an operator
        if len(tokens) == 1:
            queries.append(tantivy.Query.regex_query(SCHEMA, "text", f"{tokens[0]}.*"))
        elif tokens:
            queries.append(tantivy.Query.regex_phrase_query(SCHEMA, "text", [*tokens[:-1], f"{tokens[-1]}.*"]))
    return queries


@dataclass(frozen=True)
class BuiltIndex:
    """The catalog as it was at `version`: the index; the entries' ids in each sort order (a hit's rank is its
    position there); and each entry's (source, type) pair as a code, with how many entries have each pair, which
    answer a search without words at once."""

    version: int
    searcher: tantivy.Searcher
    ids_in_order: dict[str, array]
    pair_codes: dict[tuple[str, str], int]
    code_of: array | dict  # by entry id
    entries_with: list[int]  # by code

    @property
    def documents(self) -> int:
        return self.searcher.num_docs

    def search(self, *, query: str, source: str | None, model_type: str | None, sort: str, offset: int,
               limit: int) -> tuple[list[int], int] | None:
        """(the ids of the entries at offset…offset+limit in `sort` order, how many match); None when the index
        cannot answer (a phrase whose last word starts too many words for Tantivy to expand)."""
        words = _word_queries(query)
        if not words:
            found = self._filtered(source, model_type, sort, offset, limit)
            if found is not None:
                return found
        filters = [tantivy.Query.term_query(SCHEMA, field, value)
                   for field, value in (("source", source), ("model_type", model_type)) if value]
        search = tantivy.Query.boolean_query([(tantivy.Occur.Must, must) for must in [*words, *filters]])
        try:
            if offset >= self.documents:  # past every entry: Tantivy would collect offset+limit hits to find none
                return [], self.searcher.search(search, 1, count=True).count
            found = self.searcher.search(search, limit, count=True, order_by_field=f"rank_{sort}", offset=offset,
                                         order=tantivy.Order.Asc)
        except ValueError:
            logger.info("the search index cannot answer %r; the database does", query)
            return None
        ids = self.ids_in_order[sort]
        return [ids[rank] for rank, _ in found.hits], found.count

    def _filtered(self, source: str | None, model_type: str | None, sort: str, offset: int,
                  limit: int) -> tuple[list[int], int] | None:
        """A search without words: counted from the pairs' counts, its page read by walking the sort order; None
        when the filters are so narrow that the walk would be long (Tantivy then reads just their entries)."""
        wanted = {code for (pair_source, pair_type), code in self.pair_codes.items()
                  if source in (None, "", pair_source) and model_type in (None, "", pair_type)}
        total = sum(self.entries_with[code] for code in wanted)
        ordered = self.ids_in_order[sort]
        if len(wanted) == len(self.pair_codes):
            return list(ordered[offset:offset + limit]), total
        if offset >= total:
            return [], total
        if (offset + limit) * len(ordered) > WALK_LIMIT * total:  # the rows walked, about, for the page
            return None
        page, skipped, code_of = [], 0, self.code_of
        for entry_id in ordered:
            if code_of[entry_id] in wanted:
                if skipped < offset:
                    skipped += 1
                    continue
                page.append(entry_id)
                if len(page) == limit:
                    break
        return page, total


def _by_id(largest: int, count: int) -> array | dict:
    """A number for each of `count` entries, by entry id: an array indexed by id (8 bytes an id up to `largest`),
    unless deletions left the ids so sparse that a dict takes less."""
    return array("q", [0]) * (largest + 1) if largest < 4 * count + 1024 else {}


def build() -> BuiltIndex | None:
    """The index of the catalog as the database holds it now (one snapshot: the version and every entry read
    together); None where the database counts no changes."""
    with transaction.atomic():
        if connection.vendor == "postgresql":  # one snapshot for the whole transaction, as SQLite's WAL gives
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        version = catalog_version()
        if version is None:
            return None
        ids_in_order = {sort: array("q", in_sort_order(CatalogModel.objects.all(), sort)
                                    .values_list("id", flat=True).iterator(chunk_size=20_000))
                        for sort in ORDERINGS}
        largest, count = max(ids_in_order["downloads"], default=0), len(ids_in_order["downloads"])
        ranks, pair_codes, entries_with = {}, {}, []
        code_of = _by_id(largest, count)
        for sort, ids in ids_in_order.items():
            ranks[sort] = rank = _by_id(largest, count)
            for position, entry_id in enumerate(ids):
                rank[entry_id] = position
        index = tantivy.Index(SCHEMA)
        index.register_tokenizer("words", ANALYZER)
        writer = index.writer(64_000_000, 1)  # one thread: the web server keeps the other core
        entries = CatalogModel.objects.order_by().values_list(
            "id", "model_id", "name", "description", "tags", "source", "model_type").iterator(chunk_size=5000)
        for entry_id, model_id, name, description, tags, source, model_type in entries:
            document = tantivy.Document()
            for text in (model_id, name, description, _words(tags), source, model_type):
                document.add_text("text", text)
            document.add_text("source", source)
            document.add_text("model_type", model_type)
            for sort, rank in ranks.items():
                document.add_integer(f"rank_{sort}", rank[entry_id])
            writer.add_document(document)
            code = pair_codes.setdefault((source, model_type), len(pair_codes))
            if code == len(entries_with):
                entries_with.append(0)
            entries_with[code] += 1
            code_of[entry_id] = code
        writer.commit()
        writer.wait_merging_threads()
    index.reload()
    return BuiltIndex(version, index.searcher(), ids_in_order, pair_codes, code_of, entries_with)


class SearchIndex:
    """The process's index of the catalog: the last one built, and at most one build under way."""

    def __init__(self) -> None:
        self._built: BuiltIndex | None = None
        self._lock = threading.Lock()
        self._building = False
        self._next_build_at = 0.0

    @property
    def documents(self) -> int:
        built = self._built
        return built.documents if built else 0

    def current(self) -> BuiltIndex | None:
        """The index if it holds the catalog as the database does now; otherwise None, and a build is started."""
        version = catalog_version()
        built = self._built
        if version is not None and built is not None and built.version == version:
            return built
        if version is not None:
            self._build_soon()
        return None

    def _build_soon(self) -> None:
        with self._lock:
            if self._building:
                return
            self._building = True
        threading.Thread(target=self._build, name="catalog-search-index", daemon=True).start()

    def _build(self) -> None:
        try:
            while True:
                time.sleep(max(0.0, self._next_build_at - time.monotonic()))
                self._wait_for_quiet()
                started = time.monotonic()
                built = build()
                if built is None:
                    return
                self._built = built
                took = time.monotonic() - started
                self._next_build_at = time.monotonic() + PAUSE_FACTOR * took
                logger.info("catalog search index built: %d entries at version %d in %.1f s",
                            built.documents, built.version, took)
                if catalog_version() == built.version:
                    return
        except Exception:
            self._next_build_at = time.monotonic() + RETRY_SECONDS
            logger.exception("building the catalog search index failed; the database answers searches")
        finally:
            connection.close()  # this thread's own connection
            with self._lock:
                self._building = False

    @staticmethod
    def _wait_for_quiet() -> None:
        version, deadline = catalog_version(), time.monotonic() + WAIT_LIMIT_SECONDS
        while time.monotonic() < deadline:
            time.sleep(QUIET_SECONDS)
            now = catalog_version()
            if now == version:
                return
            version = now


INDEX = SearchIndex()
