"""timm-style registries: a config or a sweep names a key, the library builds the thing.

Each kind of component (models, datasets, optimizers, γ selectors, ...) owns one
:class:`Registry`. Registering is a decorator::

    SELECTORS = Registry("selector")

    @SELECTORS.register("alg")
    def select_alg(...): ...

    SELECTORS.get("alg")       # -> the function
    SELECTORS.names()          # -> ["alg", ...]

An unknown key raises a ``KeyError`` that lists the known keys and the closest match.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

__all__ = ["Registry"]


class Registry(Generic[T]):
    """A name → object map with decorator registration and helpful lookup errors.

    Args:
        kind: what the registry holds, used in error messages ("model", "optimizer", ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None, *, override: bool = False):
        """Register ``obj`` under ``name``; without ``obj``, return a decorator.

        Raises:
            ValueError: ``name`` is already taken and ``override`` is false.
        """
        key = self._normalize(name)

        def add(item: T) -> T:
            if key in self._items and not override:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[key] = item
            return item

        if obj is not None:
            return add(obj)
        return add

    def unregister(self, name: str) -> T:
        """Remove and return the object registered under ``name`` (KeyError if none)."""
        self.get(name)
        return self._items.pop(self._normalize(name))

    def get(self, name: str) -> T:
        """The object registered under ``name`` (case-insensitive, '-' and '_' alike)."""
        key = self._normalize(name)
        try:
            return self._items[key]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            close = difflib.get_close_matches(key, list(self._items), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise KeyError(f"unknown {self.kind} {name!r}. Known: {known}.{hint}") from None

    def names(self) -> list[str]:
        """Registered keys, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._normalize(name) in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"

    @staticmethod
    def _normalize(name: str) -> str:
        if not isinstance(name, str) or not name:
            raise TypeError(f"registry keys are non-empty strings, got {name!r}")
        return name.strip().lower().replace("-", "_")


def build(registry: Registry[Callable[..., T]], name: str, /, **kwargs) -> T:
    """Look ``name`` up in ``registry`` and call it with ``kwargs``."""
    return registry.get(name)(**kwargs)
