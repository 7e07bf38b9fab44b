"""The network and its arithmetic: Numba kernels, tiled products, shapes and initialisation, the
network's forward and backward, optimizers, learning-rate schedules and the gradient check.
Nothing here reads files or knows about image folders or runs.
"""
