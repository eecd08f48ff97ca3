"""What people read: page helpers, formatters and the HTML report (no Streamlit here).

views   pure functions behind the Compare, Gradients, Runs and ROI pages (widget values in,
        tables, series and labels out)
fmt     text formatters: mean ± std, speed-ups, durations, ROI spans
report  the self-contained HTML report of one experiment
sweeps  the Map and Scoreboard pages' sentences, tables and figures (the report's map too)
"""
