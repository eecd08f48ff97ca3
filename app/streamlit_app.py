"""ALTO Lab dashboard: `make app` or `alto app` starts it; one thin file per page under sections/."""
from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` for the page files

st.set_page_config(page_title="ALTO Lab", page_icon="⛰️", layout="wide")

PAGES = Path(__file__).resolve().parent / "sections"  # not "pages/": that name turns on Streamlit's auto-discovery
navigation = st.navigation({
    "Experiments": [
        st.Page(PAGES / "home.py", title="Home", icon="🏠", default=True),
        st.Page(PAGES / "launch.py", title="Launch", icon="🚀"),
        st.Page(PAGES / "live.py", title="Live", icon="📡"),
        st.Page(PAGES / "compare.py", title="Compare", icon="📊"),
        st.Page(PAGES / "gradients.py", title="Gradients", icon="🧭"),
        st.Page(PAGES / "runs.py", title="Runs", icon="🗂️"),
    ],
    "Judge": [
        st.Page(PAGES / "roi.py", title="ROI", icon="💰"),
        st.Page(PAGES / "landscape.py", title="Landscape", icon="⛰️"),
        st.Page(PAGES / "flatness.py", title="Flatness", icon="📐"),
    ],
})
navigation.run()
