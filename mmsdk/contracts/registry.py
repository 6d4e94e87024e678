"""Registries by name, open to other packages: adapters, data builders, mask strategies, tasks and objectives.

Configs and recipes name what they use (`adapter: patchtst`, `strategy: tube`, `task: multilabel`); a registry
turns the name into the class or function. Entries come from two places, through one mechanism:

- **entry points** (the Python packaging convention for plugins): a package declares, in its `pyproject.toml`,

  ```toml
  [project.entry-points."mmsdk.adapters"]
  my_adapter = "my_package.adapters:MyAdapter"
  ```

  and the registry imports `my_package.adapters` the first time `my_adapter` is asked for. mmsdk's own adapter
  families, objectives, tasks and mask strategies are declared exactly this way, so the core names no module
  paths and importing `mmsdk` imports none of them;
- **in-process registration** (notebooks, tests, code that is not packaged): `register_adapter(MyAdapter)`,
  `@register_task("my_task")`, ...

Every lookup error names the registry and lists the known names.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from importlib import metadata
from typing import Any, Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Registry(Generic[T]):
    """Names → objects of one kind, filled by entry points of `group` and by :meth:`register`.

    Args:
        kind: what is registered, for messages ("adapter", "mask strategy", ...).
        group: the entry-point group, e.g. "mmsdk.adapters".
        check: validates an object before it is registered (raises TypeError naming what is wrong); the module
            that defines a registry's base class installs it with :meth:`set_check`.
    """

    def __init__(self, kind: str, group: str, check: Callable[[str, Any], None] | None = None) -> None:
        self.kind, self.group, self._check = kind, group, check
        self._items: dict[str, T] = {}
        self._entry_points: dict[str, metadata.EntryPoint] | None = None

    def set_check(self, check: Callable[[str, Any], None]) -> None:
        """Installs the validation of registered objects (e.g. "a concrete subclass of Adapter")."""
        self._check = check

    def _declared(self) -> dict[str, metadata.EntryPoint]:
        """The group's entry points by name (read once; installed packages do not change while running)."""
        if self._entry_points is None:
            self._entry_points = {ep.name: ep for ep in metadata.entry_points(group=self.group)}
        return self._entry_points

    def register(self, name: str, obj: T) -> T:
        """Registers `obj` under `name` and returns it.

        Registering the same object again is a no-op (an entry point and a decorator may both name it).

        Raises:
            ValueError: when `name` is empty or already names a different object.
            TypeError: when the registry's check rejects `obj`.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} needs a non-empty string name, got {name!r}")
        if self._check is not None:
            self._check(name, obj)
        current = self._items.get(name)
        if current is not None and current is not obj:
            raise ValueError(
                f"{self.kind} {name!r} is already registered as {_qualname(current)}; cannot register "
                f"{_qualname(obj)} under the same name"
            )
        self._items[name] = obj
        return obj

    def get(self, name: str) -> T:
        """The object registered as `name`, loading its entry point on first use.

        Raises:
            ValueError: for an unknown name (listing the known ones), or an entry point that fails to load.
        """
        if name in self._items:
            return self._items[name]
        entry_point = self._declared().get(name)
        if entry_point is None:
            raise ValueError(f"unknown {self.kind} {name!r}; known: {self.names()}")
        try:
            obj = entry_point.load()
        except (ImportError, AttributeError) as err:
            raise ValueError(
                f"{self.kind} {name!r}: its entry point {entry_point.value!r} (group {self.group!r}) failed to "
                f"load: {err}"
            ) from err
        logger.debug("loaded %s %r from %s", self.kind, name, entry_point.value)
        return self.register(name, obj) if name not in self._items else self._items[name]

    def names(self) -> list[str]:
        """Every registered or declared name, sorted."""
        return sorted(set(self._items) | set(self._declared()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._items or name in self._declared())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, group={self.group!r}, names={self.names()})"


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"


def concrete_subclass_of(base: type) -> Callable[[str, Any], None]:
    """A registry check: the object is a subclass of `base` that implements every abstract method."""

    def check(name: str, obj: Any) -> None:
        if not (isinstance(obj, type) and issubclass(obj, base)):
            raise TypeError(f"{name!r} must be a subclass of {base.__name__}, got {_qualname(obj)}")
        if inspect.isabstract(obj):
            missing = sorted(getattr(obj, "__abstractmethods__", ()))
            raise TypeError(f"{_qualname(obj)} ({name!r}) is abstract: it does not implement {missing}")

    return check


def _callable(name: str, obj: Any) -> None:
    if not callable(obj):
        raise TypeError(f"{name!r} must be callable, got {type(obj).__name__}")


# the modules that define Adapter, Task and Objective install their checks (`concrete_subclass_of`)
ADAPTERS: Registry[Any] = Registry("adapter", "mmsdk.adapters")
DATA_BUILDERS: Registry[Callable[..., Any]] = Registry("data builder", "mmsdk.data_builders", _callable)
MASK_STRATEGIES: Registry[Callable[..., Any]] = Registry("mask strategy", "mmsdk.mask_strategies", _callable)
TASKS: Registry[Any] = Registry("task", "mmsdk.tasks")
OBJECTIVES: Registry[Any] = Registry("objective", "mmsdk.objectives")


def register_adapter(cls: type[T]) -> type[T]:
    """Class decorator: registers an :class:`~mmsdk.contracts.adapter.Adapter` under its `name` attribute."""
    name = getattr(cls, "name", None)
    if not name:
        raise ValueError(f"{getattr(cls, '__name__', cls)} needs a class attribute `name` to be registered")
    return ADAPTERS.register(name, cls)


def register_data(*names: str) -> Callable[[T], T]:
    """Decorator: `builder(data: Mapping, model_config: ModelConfig, stage) -> DataSplits` under each name (by
    convention the adapter names it serves)."""

    def wrap(builder: T) -> T:
        for name in names:
            DATA_BUILDERS.register(name, builder)
        return builder

    return wrap


def register_mask_strategy(name: str) -> Callable[[T], T]:
    """Decorator: a mask strategy `strategy(batch, config, ratio, generator) -> Mask` (see
    :mod:`mmsdk.contracts.mask_strategies`)."""
    return lambda strategy: MASK_STRATEGIES.register(name, strategy)


def register_task(cls: type[T]) -> type[T]:
    """Class decorator: registers a :class:`~mmsdk.contracts.tasks.Task` under its `name` attribute."""
    return TASKS.register(getattr(cls, "name", ""), cls)


def register_objective(cls: type[T]) -> type[T]:
    """Class decorator: registers an :class:`~mmsdk.models.objectives.base.Objective` under its `name`."""
    return OBJECTIVES.register(getattr(cls, "name", ""), cls)


def available_adapters() -> list[str]:
    """Names of every adapter, built-in or from another package."""
    return ADAPTERS.names()
