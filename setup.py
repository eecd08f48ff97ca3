"""Packaging beyond pyproject.toml: the dashboard folder app/ is installed as the package `alto_app`
(pyproject.toml cannot combine package discovery with a renamed folder)."""
from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["alto", "alto.*"]), "alto_app", "alto_app.sections"],
    package_dir={"alto_app": "app"},
    package_data={"alto.optim": ["*.c"]},  # the CPU loop, compiled on first use (alto/optim/cpu_kernel.py)
)
