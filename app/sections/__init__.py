"""The page scripts that streamlit_app.py navigates between (a package only so that installs carry them)."""
