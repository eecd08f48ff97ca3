"""ALTO Lab: run, watch and judge optimizer comparisons (ALTO, E, Lamb, LION, SGD).

`alto.track(...)` records your own training loop (alto.train.tracking); it is imported on first
use, so `import alto` stays light.
"""

__version__ = "0.1.0"

_LAZY = {"track": "alto.train.tracking", "Diverged": "alto.train.tracking"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'alto' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
