"""What an experiment measured, and what that is worth.

experiment  reads an experiment's settings (its targets) and its runs' series grouped by optimizer
verdicts    the one path from the store to verdicts: time to target on the raw validation series,
            misses and divergence priced, LR selection, confirmation runs, candidate vs baseline
measured    the verdict of one pair at one target as the ROI page and the report use it, with
            its split into fewer steps x cost per step
savings     GPU-hours, money, energy and CO2e a speed-up saves a year (pure)
factors     savings on the user's fleet as steps to target x cost per step, each factor with the
            workload, device and date it was measured on; a cost from another kind of device refused
budget      confirm at budget: the candidate re-run with its schedule shortened to the steps its
            speed-up promises, and whether it still reaches the target
planning    seeds per arm that would resolve 1.1x / 1.2x / 1.3x at a measured (or assumed) spread
memory      optimizer state bytes per parameter (measured on the real optimizers), peak memory per
            run, and whether a model still fits per GPU
claims      the paper's headline claims, kept apart from what was measured, and what this
            experiment measured at a claim's own metric and threshold
sweep       the map of a sweep: each candidate against the baseline at every swept value (one
            workload each), speed-ups and final-metric differences, and what else changed with it
scoreboard  every workload's costs, ratios to the fastest and verdicts against it; the
            performance profile across workloads and its area

The statistics themselves live in `alto.stats`; what people read is built in
`alto.presentation`. Import from the module that defines a name.
"""
