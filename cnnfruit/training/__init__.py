"""A training run: the epoch loop, the run that owns it (fit, resume, stop), the run's folder on disk,
its logs, and the learning-rate finder.
"""
