"""What an experiment measured, and what that is worth.

experiment  reads an experiment's runs from the Store: best LR per optimizer, time to target
            per run, the summary table, series grouped by optimizer
measured    the speed-up of one optimizer over another at a target, as the ROI page and the
            report use it (reads the Store through `experiment`)
savings     GPU-hours, money, energy and CO2e a speed-up saves a year (pure)
claims      the paper's headline claims, kept apart from what was measured (pure)

The statistics themselves live in `alto.stats`; what people read is built in
`alto.presentation`. Import from the module that defines a name.
"""
