"""Experiment drivers: data, training runs in run folders, comparison, evaluation, sampling.

Everything here sits on top of the core (:mod:`vca_ref.ops`, :mod:`vca_ref.nn`,
:mod:`vca_ref.models`) and the machinery (:mod:`vca_ref.train`, :mod:`vca_ref.diffusion`); the
``vca-ref`` command line (:mod:`vca_ref.cli`) calls into it.
"""
