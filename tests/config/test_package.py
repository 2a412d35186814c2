"""cutover.config itself: every config model of its modules is importable from it."""

from __future__ import annotations

import importlib
import pkgutil

from pydantic import BaseModel

import cutover.config


def test_every_config_model_is_exported() -> None:
    defined = set()
    for module in pkgutil.iter_modules(cutover.config.__path__):
        namespace = vars(importlib.import_module(f"cutover.config.{module.name}"))
        defined |= {
            name
            for name, value in namespace.items()
            if isinstance(value, type)
            and issubclass(value, BaseModel)
            and value.__module__.startswith("cutover.config.")
        }
    assert defined and defined <= set(cutover.config.__all__)
    assert all(getattr(cutover.config, name) for name in cutover.config.__all__)
