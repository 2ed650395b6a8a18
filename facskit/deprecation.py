"""Renamed Python keywords keep working for one release, with a DeprecationWarning naming the new one.

    @renamed_keyword("every", "detect_every")
    def __init__(self, detect_every: int = 5) -> None: ...

``Detector(every=5)`` then runs as ``Detector(detect_every=5)`` and warns once per call site; passing both
spellings is a :class:`TypeError`, as passing one keyword twice is. The old spelling is accepted by keyword
only: positional calls never changed meaning. The command-line counterpart is
:func:`facskit.cli.add_deprecated_alias`.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["renamed_keyword"]

F = TypeVar("F", bound=Callable[..., Any])


def renamed_keyword(old: str, new: str) -> Callable[[F], F]:
    """Decorate a function whose keyword ``old`` is now called ``new``: ``old=`` is passed on as ``new=``
    with a :class:`DeprecationWarning` pointing at the caller's line."""

    def decorate(func: F) -> F:
        name = func.__qualname__.removesuffix(".__init__")

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if old in kwargs:
                if new in kwargs:
                    raise TypeError(f"{name}() got both {old}= and its new name {new}=; pass {new}= only")
                warnings.warn(
                    f"{name}({old}=...) is deprecated and will be removed in the next release; use {new}=...",
                    DeprecationWarning,
                    stacklevel=2,
                )
                kwargs[new] = kwargs.pop(old)
            return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
