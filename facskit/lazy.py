"""Lazy re-exports (PEP 562): a package names what its modules define without importing them up front, so
``import facskit.models`` (or ``.train``, ``.eval``, ``.analyze``) does not import torch."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_exports(package: str, homes: dict[str, str]) -> Callable[[str], Any]:
    """The module ``__getattr__`` of ``package``: a name in ``homes`` is taken from the module
    ``homes[name]``, imported on first use; any other name is an AttributeError, as for a plain module."""

    def __getattr__(name: str) -> Any:
        if name in homes:
            return getattr(import_module(homes[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
