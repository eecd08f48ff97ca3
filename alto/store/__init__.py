"""SQLite store: schema + migrations, the batched metric writer, downsampled read queries."""

from .db import StoreError
from .migrations import MIGRATIONS, schema_version
from .queries import X_AXES
from .store import BUDGET_TAG, CONFIRM_TAG, RUN_FIELDS, STATUSES, TERMINAL_STATUSES, Store
from .writer import MetricWriter

__all__ = [
    "BUDGET_TAG", "CONFIRM_TAG", "MIGRATIONS", "RUN_FIELDS", "STATUSES", "TERMINAL_STATUSES", "X_AXES",
    "MetricWriter", "Store", "StoreError", "schema_version",
]
