"""The override layer: fast twins of reference functions in :mod:`vca_ref.ops`.

The reference (:mod:`vca_ref.ops`, :mod:`vca_ref.train.optim`) is the plain line of math.  Every
speed trick lives here instead, as the twin of exactly one reference function: CPU-fast NumPy
variants and hand-written CUDA kernels (:mod:`vca_ref.fast.kernels`).
"""
