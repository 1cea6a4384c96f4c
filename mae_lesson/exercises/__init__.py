"""Automatic checkers for the notebooks' exercises, one module per notebook.

Each checker runs the learner's function on fixed inputs, compares it with the package's
reference, and raises :class:`ExerciseError` with what was expected and what came back
(or prints a short success line and returns True). An untouched stub is reported as not
attempted (the checker prints one line and returns False). Example::

    from mae_lesson.exercises import use
    from mae_lesson.exercises.patches import check_patchify
    ok_patchify = check_patchify(my_patchify)
    patchify_fn = use("patchify", my_patchify, reference_patchify, ok_patchify)
"""

from ._feedback import (
                        ExerciseError,
                        NotAttempted,
                        call_learner,
                        checker,
                        diagnose,
                        expect_close,
                        expect_equal,
                        expect_shape,
                        passed,
                        same,
                        use,
)

__all__ = ["ExerciseError", "NotAttempted", "call_learner", "checker", "diagnose", "expect_close", "expect_equal",
           "expect_shape", "passed", "same", "use"]
