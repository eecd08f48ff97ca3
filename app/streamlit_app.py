"""ALTO Lab dashboard: `make app` or `alto app` starts it; one thin file per page under sections/."""
from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` for the page files

st.set_page_config(page_title="ALTO Lab", page_icon=":material/landscape:", layout="wide")

from common import can_edit  # noqa: E402  (after the path above)
from gate import require_token  # noqa: E402

require_token()  # without a valid token: the token page alone, no navigation, no page content
if not can_edit():
    st.sidebar.info("Read-only access: every page and every download; launching, cancelling, deleting and "
                    "editing need the editor token.", icon=":material/visibility:")

PAGES = Path(__file__).resolve().parent / "sections"  # not "pages/": that name turns on Streamlit's auto-discovery
navigation = st.navigation({
    "Experiments": [
        st.Page(PAGES / "home.py", title="Home", icon=":material/home:", default=True),
        st.Page(PAGES / "launch.py", title="Launch", icon=":material/rocket_launch:"),
        st.Page(PAGES / "live.py", title="Live", icon=":material/monitoring:"),
        st.Page(PAGES / "compare.py", title="Compare", icon=":material/stacked_line_chart:"),
        st.Page(PAGES / "gradients.py", title="Gradients", icon=":material/insights:"),
        st.Page(PAGES / "runs.py", title="Runs", icon=":material/table_rows:"),
    ],
    "Judge": [
        st.Page(PAGES / "roi.py", title="ROI", icon=":material/savings:"),
        st.Page(PAGES / "map.py", title="Map", icon=":material/map:"),
        st.Page(PAGES / "scoreboard.py", title="Scoreboard", icon=":material/leaderboard:"),
        st.Page(PAGES / "landscape.py", title="Landscape", icon=":material/landscape:"),
        st.Page(PAGES / "flatness.py", title="Flatness", icon=":material/straighten:"),
    ],
})
navigation.run()
