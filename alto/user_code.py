"""User code named in a preset file: `model = "package.module:factory"` (or `dataset = ...`).

Importing runs code, so an import path is only ever read from a preset file (or given in Python),
never taken from text typed in the browser; it is imported when the run starts, in the run's own
process. Errors name the preset field and the path.
"""
from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

_IMPORT_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")


def is_import_path(value: object) -> bool:
    """Whether `value` reads "package.module:attribute"."""
    return isinstance(value, str) and _IMPORT_PATH.fullmatch(value) is not None


def load_factory(path: str, field: str) -> Callable:
    """The callable `path` ("package.module:attribute") names; ValueError naming `field` and the
    path if it cannot be imported or is not callable."""
    if not is_import_path(path):
        raise ValueError(f"{field} = {path!r}: an import path reads 'package.module:factory'")
    module_name, attribute = path.split(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # noqa: BLE001 - whatever the user's module raises while importing
        raise ValueError(f"{field} = {path!r}: cannot import {module_name}: {type(err).__name__}: {err} "
                         "(is its folder on PYTHONPATH?)") from err
    factory = getattr(module, attribute, None)
    if not callable(factory):
        found = "nothing" if factory is None else f"a {type(factory).__name__}"
        raise ValueError(f"{field} = {path!r}: {module_name} has {found} called {attribute}, not a function")
    return factory


def call_factory(path: str, field: str, *args: Any, **kwargs: Any) -> Any:
    """Load the factory `path` names and call it; what it raises comes back as a ValueError
    naming `field` and the path (the original is its cause)."""
    factory = load_factory(path, field)
    try:
        return factory(*args, **kwargs)
    except Exception as err:  # noqa: BLE001 - the user's code may raise anything
        raise ValueError(f"{field} = {path!r} raised {type(err).__name__}: {err}") from err
