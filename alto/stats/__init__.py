"""Statistics on plain arrays: no database, no torch, no plotting.

smoothing   debiased EMA (TensorBoard-style)
downsample  index downsampling that keeps the first and last points
aggregate   runs onto one x grid, mean/std/min/max per grid point
targets     time to target on each x axis of a run
speedup     speed-up and metric differences over seeds, with bootstrap CIs
metrics     which way a metric improves; which validation metric chooses the LR

Import from the module that defines a name (`from alto.stats.speedup import speedup`).
"""
