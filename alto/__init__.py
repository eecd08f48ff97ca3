"""ALTO Lab: run, watch and judge optimizer comparisons (ALTO, E, Lamb, LION, SGD)."""

__version__ = "0.1.0"
