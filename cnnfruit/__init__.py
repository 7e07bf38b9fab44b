"""cnnfruit: train, evaluate and explain a small CNN on small image sets, on a CPU."""

__version__ = "0.1.0"
