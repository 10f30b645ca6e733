"""interp: a small JAX library for sparse-autoencoder interpretability research.

It backs the executable book that reproduces GDM's mech-interp Progress Update #1
(April 2024). Submodules are imported lazily so that `import interp` stays cheap.
"""

__version__ = "0.1.0"
