"""Maintainer tooling for the course (not part of the ``mae_lesson`` package learners import)."""
