"""Speed measurements of the lesson package: the training step against its peers, kernels, profiles.

Run each from the repository root as a module, ``python -m benchmarks.train_step ...``. Nothing in
``mae_lesson`` imports from here.
"""
