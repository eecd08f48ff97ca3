"""The dashboard, installed as the package `alto_app`; Streamlit runs its files as scripts (streamlit_app.py)."""
