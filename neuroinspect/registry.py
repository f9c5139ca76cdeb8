"""Plain-dict registries filled by decorators (timm's ``register_model`` style).

Each method family (datasets, finders, visualizers, editors) owns one :class:`Registry`.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from neuroinspect.errors import UserError

T = TypeVar("T")


def _first_line(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


class Registry(Generic[T]):
    """A named collection of entries with one-line summaries.

    >>> finders = Registry("finder")
    >>> @finders.register("random")
    ... class RandomFinder: '''Random neurons, a control.'''
    >>> finders.get("random").__name__
    'RandomFinder'
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._summaries: dict[str, str] = {}

    def register(self, name: str, summary: str | None = None) -> Callable[[T], T]:
        """Decorator adding ``obj`` under ``name``; the summary defaults to the docstring's first line."""

        def deco(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            self._summaries[name] = summary or _first_line(obj)
            return obj

        return deco

    def get(self, name: str) -> T:
        """The entry called ``name``; a :class:`UserError` listing the choices if there is none."""
        if name not in self._entries:
            close = difflib.get_close_matches(name, self._entries, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UserError(
                f"unknown {self.kind} {name!r}.{hint} Choose one of: {', '.join(sorted(self._entries))} "
                f"(see `neuroinspect methods list`)."
            )
        return self._entries[name]

    def names(self) -> list[str]:
        return list(self._entries)

    def summary(self, name: str) -> str:
        return self._summaries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
