"""Experiments that test the paper's claims on your own data."""

from .data_scaling import Experiment, balanced_subset, crossings, run_experiment

__all__ = ["Experiment", "balanced_subset", "crossings", "run_experiment"]
