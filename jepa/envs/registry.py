"""Environments by name: ``make_env("two-rooms")``, ``env_names()``, ``register(name, factory)``.

A factory is a callable that takes keyword options and returns an :class:`jepa.envs.base.Env`,
or a ``"module:attribute"`` string naming one, imported only when the environment is made (so
listing the names never imports an optional simulator: Push-T needs gym-pusht only once it is
made). A class with a ``make(**overrides)`` classmethod is called through it (the options then
override its config's fields).

    register("my-env", "my_package.envs:MyEnv")
    env = make_env("my-env", some_option=3)

Environments from outside this repository are registered without editing it, by name and lazy
factory, from (read once, when this module is imported):

- the ``jepa.envs`` entry-point group of installed packages (``pyproject.toml``:
  ``[project.entry-points."jepa.envs"]`` then ``my-env = "my_package.envs:MyEnv"``);
- the ``JEPA_ENVS`` environment variable: ``name=module:attribute`` pairs separated by commas.

``jepa data collect``, ``jepa plan --env`` and ``make_env`` then know them like the built-in ones.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any

from jepa.envs.base import Env

Factory = Callable[..., Env]

_FACTORIES: dict[str, Factory | str] = {}


def register(name: str, factory: Factory | str) -> None:
    """Make ``factory`` (a callable, or a lazy ``"module:attribute"`` string) available as ``name``."""
    if not name or not isinstance(name, str):
        raise ValueError(f"register: an environment name must be a non-empty string, got {name!r}")
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        if not module or not attr:
            raise ValueError(f"register: a lazy factory is 'module:attribute', got {factory!r}")
    elif not callable(factory):
        raise ValueError(f"register: the factory of {name!r} must be callable or 'module:attribute', got {factory!r}")
    _FACTORIES[name] = factory


def env_names() -> list[str]:
    """The registered names, sorted (imports no environment)."""
    if _PLUGIN_ERROR is not None:
        raise _PLUGIN_ERROR
    return sorted(_FACTORIES)


def _resolve(factory: Factory | str) -> Factory:
    if not isinstance(factory, str):
        return factory
    module, _, attr = factory.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def make_env(name: str, **kwargs: Any) -> Env:
    """A fresh environment by its registered name; ``kwargs`` are its options (config fields)."""
    if _PLUGIN_ERROR is not None:
        raise _PLUGIN_ERROR
    if name not in _FACTORIES:
        raise ValueError(f"unknown environment {name!r}; known environments: {', '.join(env_names())}")
    factory = _resolve(_FACTORIES[name])
    make = getattr(factory, "make", factory)
    return make(**kwargs)


register("two-rooms", "jepa.envs.two_rooms:TwoRooms")
register("pusht", "jepa.envs.pusht:PushT")


def load_plugins(spec: str | None = None) -> list[str]:
    """Register the ``jepa.envs`` entry points and the ``JEPA_ENVS`` pairs (``spec`` overrides the
    variable); returns the names registered. A malformed pair is an error naming it."""
    from importlib.metadata import entry_points

    names = []
    for ep in entry_points(group="jepa.envs"):
        register(ep.name, ep.value)
        names.append(ep.name)
    spec = os.environ.get("JEPA_ENVS", "") if spec is None else spec
    for pair in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, factory = pair.partition("=")
        if not sep:
            raise ValueError(f"JEPA_ENVS: {pair!r} is not name=module:attribute")
        register(name.strip(), factory.strip())
        names.append(name.strip())
    return names


_PLUGIN_ERROR: ValueError | None = None
try:
    load_plugins()
except ValueError as e:  # raised where a command asks for environments, as one line
    _PLUGIN_ERROR = e
