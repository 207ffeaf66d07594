"""Neural models: datasets of windows and labels, networks, training, a registry, export to Numba."""
