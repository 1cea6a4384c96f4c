"""Automatic checkers for the notebooks' exercises, one module per notebook.

Each checker runs the learner's function on fixed inputs, compares it with the package's
reference, and raises :class:`ExerciseError` with what was expected and what came back
(or prints a short success line). Example::

    from mae_lesson.exercises.patches import check_patchify
    check_patchify(my_patchify)
"""

from ._feedback import ExerciseError, expect_close, expect_equal, expect_shape, passed

__all__ = ["ExerciseError", "expect_close", "expect_equal", "expect_shape", "passed"]
