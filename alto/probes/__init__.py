"""Probes of models and loss surfaces (torch).

landscape     toy 2-D test functions and optimizer trajectories on them (the Landscape page)
flatness      Hessian eigenvalue and trace, loss profiles and interpolations of trained weights
flatness_job  the background process that measures every finished run of an experiment
              (`python -m alto.probes.flatness_job JOB_ID --db PATH`, started by the supervisor)
"""
