"""Automatic checkers for the notebooks' exercises, one module per notebook.

Each checker runs the learner's function on fixed inputs, compares it with the package's
reference, and prints one verdict: ``Correct: ...`` (returns True), ``Not attempted yet`` for the untouched stub, or
``Not correct: ...`` with what was expected and what came back (returns False, never raises, so
the notebook runs on with the reference). Example::

    from mae_lesson.exercises import use
    from mae_lesson.exercises.patches import check_patchify
    ok_patchify = check_patchify(my_patchify)
    patchify_fn = use("patchify", my_patchify, reference_patchify, ok_patchify)
"""

from ._feedback import CHOSEN, RESULTS, ExerciseError, NotAttempted, call_learner, checker, is_stub, passed, use, whose
from ._judge import Mistake, expect_close, expect_equal, expect_shape, judge, same

__all__ = ["CHOSEN", "RESULTS", "ExerciseError", "Mistake", "NotAttempted", "call_learner", "checker", "expect_close", "expect_equal",
           "expect_shape", "is_stub", "judge", "passed", "same", "use", "whose"]
