"""README's example files: each code block after a `<!-- file: NAME -->` line, so the documentation
and the tests that run the examples cannot drift apart."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_files() -> dict[str, str]:
    """{file name: contents} of README's example files."""
    found = re.findall(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return dict(found)
