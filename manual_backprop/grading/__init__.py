"""Grading a class: an assignment's rubric applied to every submission, fairly and safely.

- :mod:`.assignment`: the assignment file (the network, what is handed in, the points, the rubric);
- :mod:`.score`: the fair score of each item (own errors lose, carried ones keep, degenerate answers never);
- :mod:`.sandbox` and :mod:`._runner`: a student's code in a process of its own, returning data only;
- :mod:`.grade`: the class, in parallel, the truth confirmed once;
- :mod:`.outputs`: the gradebook CSV, the feedback pages and Gradescope's ``results.json``.
"""

from .assignment import Assignment, load_assignment
from .grade import grade_class, grade_one
from .score import Item, StudentResult

__all__ = ["Assignment", "Item", "StudentResult", "grade_class", "grade_one", "load_assignment"]
