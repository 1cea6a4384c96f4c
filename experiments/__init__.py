"""Studies run with the lesson package: the ablation sweep, compute-matched pretraining, probe curves.

Run each from the repository root as a module, ``python -m experiments.ablations ...``; notebook 09
imports ``experiments.ablation_report``. Nothing in ``mae_lesson`` imports from here.
"""
