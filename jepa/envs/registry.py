"""Environments by name: ``make_env("two-rooms")``, ``env_names()``, ``register(name, factory)``.

A factory is a callable that takes keyword options and returns an :class:`jepa.envs.base.Env`,
or a ``"module:attribute"`` string naming one, imported only when the environment is made (so
listing the names never imports an optional simulator: Push-T needs gym-pusht only once it is
made). A class with a ``make(**overrides)`` classmethod is called through it (the options then
override its config's fields).

    register("my-env", "my_package.envs:MyEnv")
    env = make_env("my-env", some_option=3)
"""

from __future__ import annotations

import importlib
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
    if name not in _FACTORIES:
        raise ValueError(f"unknown environment {name!r}; known environments: {', '.join(env_names())}")
    factory = _resolve(_FACTORIES[name])
    make = getattr(factory, "make", factory)
    return make(**kwargs)


register("two-rooms", "jepa.envs.two_rooms:TwoRooms")
register("pusht", "jepa.envs.pusht:PushT")
