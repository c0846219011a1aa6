"""Plugins found by module: every module of a package that defines a given attribute, keyed by its `name`."""

from __future__ import annotations

import importlib
import pkgutil
from typing import TypeVar

Plugin = TypeVar("Plugin")


def discover(package: str, path: list[str], attribute: str, kind: type[Plugin]) -> dict[str, Plugin]:
    """`{plugin.name: plugin}` for each module of `package` (its `__path__` is `path`) whose `attribute` is a
    `kind`; modules without one (helpers) are skipped. Module order: alphabetical."""
    found: dict[str, Plugin] = {}
    for module_info in pkgutil.iter_modules(path):
        plugin = getattr(importlib.import_module(f"{package}.{module_info.name}"), attribute, None)
        if isinstance(plugin, kind):
            found[plugin.name] = plugin
    return found
