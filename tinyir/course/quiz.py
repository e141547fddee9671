"""Concept-check quizzes: an ipywidgets quiz in JupyterLab, a plain-text quiz everywhere else.

Each notebook ends with about four multiple-choice questions. Every choice carries an explanation,
shown once the reader answers, so a wrong answer teaches as much as a right one.

    quiz = Quiz("02_contrastive", [
        Question("What is the InfoNCE loss at init with N candidates?", [
            Choice("log N", True, "All N logits are equal, so softmax gives 1/N to the positive."),
            Choice("0", False, "That is the loss of a perfect model."),
        ]),
    ])
    quiz.show()                 # widgets in Jupyter; the text version in a terminal or in CI
    quiz.grade({1: "a"})        # the same logic, as a plain function: answers by letter

Scores are saved in a small JSON progress store (``~/.tinyir/progress.json``, or
``$TINYIR_HOME/progress.json``), written atomically so an interrupted write never loses earlier
scores.
"""

from __future__ import annotations

import json
import os
import string
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

LETTERS = string.ascii_lowercase


@dataclass(frozen=True)
class Choice:
    text: str
    correct: bool
    explanation: str


@dataclass(frozen=True)
class Question:
    prompt: str
    choices: list[Choice]

    def __post_init__(self):
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise ValueError(f"prompt: expected a non-empty string, got {self.prompt!r}")
        if len(self.choices) < 2:
            raise ValueError(f"choices: expected at least 2 choices, got {len(self.choices)}")
        if sum(choice.correct for choice in self.choices) != 1:
            raise ValueError(
                f"choices: expected exactly one correct choice for {self.prompt!r}, got "
                f"{sum(choice.correct for choice in self.choices)}"
            )

    @property
    def answer(self) -> str:
        """The letter of the correct choice."""
        return next(LETTERS[i] for i, c in enumerate(self.choices) if c.correct)


@dataclass
class QuizResult:
    score: int
    total: int
    feedback: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join([*self.feedback, f"Score: {self.score}/{self.total}"])


class ProgressStore:
    """Best and last quiz scores per quiz name, in one JSON file written atomically."""

    def __init__(self, path: str | Path | None = None):
        if path is None:
            home = Path(os.environ.get("TINYIR_HOME", Path.home() / ".tinyir"))
            path = home / "progress.json"
        self.path = Path(path)

    def load(self) -> dict:
        if not self.path.exists():
            return {}
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{self.path}: not valid JSON ({err}); move it away to start over") from err

    def record(self, quiz: str, score: int, total: int) -> dict:
        """Save a result; keeps the best score and the last attempt. Returns the quiz's entry."""
        data = self.load()
        entry = data.get(quiz, {"best": 0, "attempts": 0})
        entry.update(
            best=max(entry["best"], score), last=score, total=total,
            attempts=entry["attempts"] + 1, updated=time.strftime("%Y-%m-%dT%H:%M:%S"),
        )
        data[quiz] = entry
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".progress-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2, sort_keys=True)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return entry


class Quiz:
    """A named list of questions; ``show()`` picks widgets or text, ``grade()`` scores answers."""

    def __init__(self, name: str, questions: list[Question], store: ProgressStore | None = None):
        if not questions:
            raise ValueError("questions: expected at least one question, got none")
        self.name = name
        self.questions = questions
        self.store = store if store is not None else ProgressStore()

    def text(self) -> str:
        """The quiz as plain text (answers hidden)."""
        lines = [f"Concept check: {self.name}"]
        for number, question in enumerate(self.questions, start=1):
            lines.append(f"\n{number}. {question.prompt}")
            lines += [f"   ({LETTERS[i]}) {c.text}" for i, c in enumerate(question.choices)]
        lines.append("\nAnswer with quiz.grade({1: 'a', 2: 'c', ...}).")
        return "\n".join(lines)

    def grade(self, answers: dict[int, str], save: bool = True) -> QuizResult:
        """Score ``answers`` ({question number (1-based): letter}); explain every answer given."""
        if not isinstance(answers, dict):
            raise TypeError(f"answers: expected a dict like {{1: 'a'}}, got {type(answers).__name__}")
        score, feedback = 0, []
        for number, letter in sorted(answers.items()):
            if not isinstance(number, int) or not 1 <= number <= len(self.questions):
                raise ValueError(
                    f"answers: question numbers run from 1 to {len(self.questions)}, got {number!r}"
                )
            question = self.questions[number - 1]
            valid = LETTERS[: len(question.choices)]
            if not isinstance(letter, str) or letter.lower() not in valid:
                raise ValueError(
                    f"answers[{number}]: expected one of {list(valid)}, got {letter!r}"
                )
            choice = question.choices[valid.index(letter.lower())]
            score += choice.correct
            verdict = "right" if choice.correct else f"not quite (answer: {question.answer})"
            feedback.append(f"{number}. ({letter.lower()}) {verdict}: {choice.explanation}")
        if save:
            self.store.record(self.name, score, len(self.questions))
        return QuizResult(score, len(self.questions), feedback)

    def answer_key(self) -> dict[int, str]:
        return {n: q.answer for n, q in enumerate(self.questions, start=1)}

    def show(self) -> None:
        """Widgets in a live Jupyter kernel with ipywidgets; plain text otherwise (CI, terminal)."""
        if _widgets_available():
            self._show_widgets()
        else:
            print(self.text())

    def _show_widgets(self) -> None:
        import ipywidgets as widgets
        from IPython.display import display

        pickers = []
        rows = []
        for number, question in enumerate(self.questions, start=1):
            picker = widgets.RadioButtons(
                options=[(f"({LETTERS[i]}) {c.text}", LETTERS[i])
                         for i, c in enumerate(question.choices)],
                value=None, layout=widgets.Layout(width="auto"),
            )
            pickers.append(picker)
            rows += [widgets.HTML(f"<b>{number}. {question.prompt}</b>"), picker]
        button = widgets.Button(description="Check answers", button_style="primary")
        output = widgets.Output()

        def on_click(_):
            answers = {n: p.value for n, p in enumerate(pickers, start=1) if p.value is not None}
            output.clear_output()
            with output:
                print(self.grade(answers))

        button.on_click(on_click)
        display(widgets.VBox([*rows, button, output]))


def _widgets_available() -> bool:
    """True in a Jupyter kernel that can render widgets, False in CI and plain terminals."""
    if os.environ.get("CI") or os.environ.get("TINYIR_PLAIN_QUIZ"):
        return False
    try:
        from IPython import get_ipython

        shell = get_ipython()
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"
