"""`models [QUERY] [--source] [--limit]`: search the sources and the catalog, as /api/models/search does."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from catalog import selectors, services
from catalog.sources import SEARCHABLE
from core.api import ApiError


class Command(BaseCommand):
    help = "Search models on the sources (the local catalog answers when they cannot)."

    def add_arguments(self, parser):
        parser.add_argument("query", nargs="?", default="")
        parser.add_argument("--source", choices=list(SEARCHABLE))
        parser.add_argument("--sort", choices=list(selectors.ORDERINGS), default="downloads")
        parser.add_argument("--limit", type=int, default=20)

    def handle(self, *args, query: str, source: str | None, sort: str, limit: int, **options):
        if not 1 <= limit <= 100:
            raise CommandError("--limit must be between 1 and 100")
        try:
            page, failed = services.search(query=query, source=source, model_type=None, sort=sort,
                                           favorites_only=False, page=1, page_size=limit)
        except ApiError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from None
        if failed:
            self.stderr.write(services.offline_message(failed))
        downloaded = selectors.downloaded_keys(page.items)
        for model in page.items:
            mark = "*" if (model.source, model.model_id) in downloaded else " "
            self.stdout.write(f"{mark} {model.source:11} {model.model_id:50} {model.model_type or '-':20} "
                              f"{model.downloads:>10}")
        self.stdout.write(f"{page.total} found (* downloaded)")
