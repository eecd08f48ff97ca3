"""The two roles: an editor may do everything, a viewer may look at every page and download every
file but change nothing (no launch, cancel, delete, tag or note edits, flatness jobs, re-runs)."""
from __future__ import annotations

EDITOR = "editor"
VIEWER = "viewer"
ROLES = (EDITOR, VIEWER)


class AccessDenied(PermissionError):
    """A viewer asked for something only an editor may do."""

    def __init__(self, action: str) -> None:
        super().__init__(f"Read-only access: a viewer cannot {action}. Open the dashboard with the editor token "
                         "to do this.")
        self.action = action


def require_editor(role: str, action: str) -> None:
    """Return when `role` may change things; AccessDenied naming `action` for a viewer."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if role != EDITOR:
        raise AccessDenied(action)
