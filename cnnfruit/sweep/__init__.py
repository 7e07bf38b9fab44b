"""Hyperparameter sweeps: the search space, runs on workers (in process or on Dask), the Optuna study
and the report.
"""
