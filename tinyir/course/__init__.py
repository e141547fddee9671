"""Course helpers that sit on top of the package: quizzes and their progress store.

Nothing in the core of tinyir imports this subpackage.
"""

from tinyir.course.quiz import Choice, ProgressStore, Question, Quiz, progress_path

__all__ = ["Choice", "Question", "Quiz", "ProgressStore", "progress_path"]
