"""Statistics on plain arrays: no database, no torch, no plotting.

smoothing   debiased EMA (TensorBoard-style)
downsample  index downsampling that keeps the first and last points
aggregate   runs onto one x grid, mean/std/min/max per grid point
targets     time to target on a run's raw evaluated series
speedup     speed-up (misses priced), probability of improvement, metric differences,
            with calibrated intervals; seeds needed to resolve a speed-up
verdict     the one place verdict words are made: a speed-up's word and sentence, a metric
            difference's word
metrics     which way a metric improves; which validation metric chooses the LR
profile     ratios to the fastest optimizer across workloads, the performance profile and its area

Import from the module that defines a name (`from alto.stats.speedup import speedup`).
"""
