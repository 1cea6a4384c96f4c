"""Checkers for notebook 07 (fine-tuning and evaluation), one module per exercise group, imported here
under the names notebook 07 uses.

Each checker compares the learner's function with the package's own:

- ``mean_pool`` and ``knn`` (:mod:`.features`): the ``mean`` pool of
  :func:`mae_lesson.evaluate.extract_features` and :func:`mae_lesson.evaluate.knn_classify`;
- ``linear_probe`` (:mod:`.probe`): :func:`mae_lesson.evaluate.linear_probe` with the same seed;
- ``classifier_head`` and ``layer_decay_scales`` (:mod:`.head`): the last steps of
  :class:`mae_lesson.classifier.ViTClassifier` and :func:`mae_lesson.classifier.layer_decay_scales`;
- ``finetune_steps`` (:mod:`.finetune_loop`): the training loop of :func:`mae_lesson.finetune.finetune`.
"""

from __future__ import annotations

from ._models import CHECK_CONFIG
from .features import KNN_MISTAKES, MEAN_POOL_MISTAKES, check_knn, check_mean_pool
from .finetune_loop import LOOP_ATOL, LOOP_MISTAKES, check_finetune_steps
from .head import DECAY_MISTAKES, HEAD_MISTAKES, check_classifier_head, check_layer_decay_scales
from .probe import PROBE_MAX_DIFFERENT, PROBE_MISTAKES, PROBE_SETTINGS, check_linear_probe

__all__ = ["CHECK_CONFIG", "DECAY_MISTAKES", "HEAD_MISTAKES", "KNN_MISTAKES", "LOOP_ATOL", "LOOP_MISTAKES",
           "MEAN_POOL_MISTAKES", "PROBE_MAX_DIFFERENT", "PROBE_MISTAKES", "PROBE_SETTINGS",
           "check_classifier_head", "check_finetune_steps", "check_knn", "check_layer_decay_scales",
           "check_linear_probe", "check_mean_pool"]
