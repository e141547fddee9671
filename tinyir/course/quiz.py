"""Concept checks: click a choice to check it, in JupyterLab; ``quiz.answer(1, "b")`` elsewhere.

Each notebook's questions live in a bank outside the notebook, ``tinyir/course/quizzes/NN_slug.toml``,
so the cell that shows a quiz holds no answer key:

    quiz = Quiz.load("04_temperature")
    quiz.show()              # widgets in JupyterLab / Notebook 7; plain text in a terminal or CI
    quiz.answer(1, "b")      # the same check without widgets: records and prints the feedback

Every click (or ``answer``) answers at once with that choice's explanation, right or wrong. A
question's score is its **first** answer; later clicks still explain but never change the score.
The choices of a loaded question appear in an order drawn from the question's own text (the same
order on every machine and every run), so the position of the right answer carries no signal.

Scores go to a small JSON progress store (``$TINYIR_HOME/progress.json``, default
``~/.tinyir/progress.json``) holding, per quiz, the best and last score and the number of
attempts (one attempt = one showing of the quiz). It is written under a lock file and replaced
atomically, so two notebooks answering at the same time never lose each other's scores.
``tinyir progress`` prints it.

The old form, ``Quiz(name, [Question(prompt, [Choice(text, correct, explanation), ...])])``, still
works and keeps the choices in the order given.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import os
import random
import re
import string
import time
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tinyir.atomic import write_atomic
from tinyir.validate import check_type

LETTERS = string.ascii_lowercase
BANK_DIR = Path(__file__).resolve().parent / "quizzes"
SCHEMA_VERSION = 1            # of progress.json; bump (and migrate in _migrate) when it changes
SHUFFLE_SALT = "tinyir-quiz-1"  # part of every question's seed; changing it reshuffles the course
MIN_CHOICES = 4               # for the questions of a bank


@dataclass(frozen=True)
class Choice:
    text: str
    correct: bool
    explanation: str


@dataclass(frozen=True)
class Question:
    prompt: str
    choices: list[Choice]
    id: str = ""

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
        """The letter of the correct choice, as displayed."""
        return next(LETTERS[i] for i, c in enumerate(self.choices) if c.correct)

    def shuffled(self) -> Question:
        """The same question with its choices in the order drawn from its prompt (deterministic)."""
        order = display_order(self.prompt, len(self.choices))
        return Question(self.prompt, [self.choices[i] for i in order], self.id)


def display_order(prompt: str, n_choices: int) -> list[int]:
    """The display order of ``n_choices`` choices: a permutation seeded by the prompt's text.

    The same prompt gives the same order everywhere (sha256, not Python's salted ``hash``).
    """
    digest = hashlib.sha256(f"{SHUFFLE_SALT}\n{prompt}".encode()).digest()
    order = list(range(n_choices))
    random.Random(int.from_bytes(digest[:8], "big")).shuffle(order)
    return order


# -----------------------------------------------------------------------------------------------
# Question banks: one TOML file per notebook


def bank_names(folder: str | Path | None = None) -> list[str]:
    """The names of the banks in ``folder`` (default: the course's), e.g. ``"04_temperature"``."""
    return sorted(path.stem for path in Path(folder or BANK_DIR).glob("*.toml"))


def load_bank(name: str, folder: str | Path | None = None) -> list[Question]:
    """The questions of bank ``name`` in the bank's order, choices as written (not shuffled).

    A bank entry is either a question (``prompt``, ``[[question.choice]]`` with ``text``,
    ``correct``, ``why``) or ``include = "other_bank:question-id"``, which reuses a question of
    another bank (the chapter's questions are written once, in ``chapter_check.toml``).
    """
    folder = Path(folder or BANK_DIR)
    return [_bank_question(entry, name, folder) for entry in _read_bank(name, folder)]


def _read_bank(name: str, folder: Path) -> list[dict]:
    path = folder / f"{name}.toml"
    if not path.is_file():
        raise ValueError(f"name: no quiz bank {name!r} in {folder}; "
                         f"expected one of {bank_names(folder)}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML ({err})") from err
    entries = data.get("question", [])
    if not entries:
        raise ValueError(f"{path}: expected [[question]] entries, found none")
    return entries


def _bank_question(entry: dict, bank: str, folder: Path, seen: tuple = ()) -> Question:
    if "include" in entry:
        other, _, qid = str(entry["include"]).partition(":")
        if (other, qid) in seen:
            raise ValueError(f"{bank}: include cycle through {other}:{qid}")
        found = [e for e in _read_bank(other, folder) if e.get("id") == qid]
        if len(found) != 1:
            raise ValueError(f"{bank}: include {entry['include']!r} matches {len(found)} questions")
        return _bank_question(found[0], other, folder, (*seen, (other, qid)))
    where = f"{bank}:{entry.get('id', '?')}"
    try:
        choices = [Choice(c["text"], bool(c.get("correct", False)), c["why"])
                   for c in entry["choice"]]
        question = Question(entry["prompt"].strip(), choices, entry.get("id", ""))
    except KeyError as err:
        raise ValueError(f"{where}: missing field {err}") from None
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    if len(choices) < MIN_CHOICES:
        raise ValueError(f"{where}: expected at least {MIN_CHOICES} choices, got {len(choices)}")
    if any(not c.text.strip() or not c.explanation.strip() for c in choices):
        raise ValueError(f"{where}: every choice needs a text and an explanation (why)")
    return question


# -----------------------------------------------------------------------------------------------
# The progress store


def progress_path() -> Path:
    """Where scores are saved: ``$TINYIR_HOME/progress.json``, default ``~/.tinyir/progress.json``."""
    home = os.environ.get("TINYIR_HOME")
    return (Path(home) if home else Path.home() / ".tinyir") / "progress.json"


@contextlib.contextmanager
def _locked(lock_path: Path, timeout: float = 30.0) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (created if missing) for the block."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                _lock_file(handle)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{lock_path}: still locked after {timeout:.0f} s; "
                                       "is another process stuck writing quiz scores?") from None
                time.sleep(0.02)
        try:
            yield
        finally:
            _unlock_file(handle)


try:  # POSIX
    import fcntl

    def _lock_file(handle) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock_file(handle) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

except ImportError:  # Windows
    import msvcrt

    def _lock_file(handle) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)

    def _unlock_file(handle) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)


def _migrate(data: dict, path: Path) -> dict:
    """Any stored layout -> the current one: ``{"schema": 1, "quizzes": {name: entry}}``."""
    if "schema" not in data:  # the first layout: {quiz name: entry} at the top level
        return {"schema": SCHEMA_VERSION, "quizzes": data}
    if data["schema"] > SCHEMA_VERSION:
        raise ValueError(f"{path}: written by a newer tinyir (schema {data['schema']}, this one "
                         f"reads up to {SCHEMA_VERSION}); upgrade tinyir to read it")
    data.setdefault("quizzes", {})
    return data


class ProgressStore:
    """Best and last quiz scores per quiz name, in one JSON file: locked, written atomically.

    The file holds ``{"schema": 1, "quizzes": {name: {"best", "last", "total", "answered",
    "attempts", "updated", "attempt_id"}}}``.
    """

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else progress_path()
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    def read(self) -> dict:
        """The whole store, in the current schema (empty when the file does not exist)."""
        if not self.path.exists():
            return {"schema": SCHEMA_VERSION, "quizzes": {}}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{self.path}: not valid JSON ({err}); move it away to start over"
                             ) from err
        if not isinstance(data, dict):
            raise ValueError(f"{self.path}: expected a JSON object, found {type(data).__name__}")
        return _migrate(data, self.path)

    def load(self) -> dict:
        """``{quiz name: entry}``."""
        return self.read()["quizzes"]

    def _write(self, data: dict) -> None:
        write_atomic(self.path, json.dumps(data, indent=2, sort_keys=True) + "\n")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[dict]:
        """Read, let the block change the data, write: all under the lock."""
        with _locked(self.lock_path):
            data = self.read()
            yield data
            data["schema"] = SCHEMA_VERSION
            self._write(data)

    def record_attempt(self, quiz: str, attempt_id: str, score: int, answered: int,
                       total: int) -> dict:
        """Save the state of one attempt (a new ``attempt_id`` counts one more attempt)."""
        with self._transaction() as data:
            entry = data["quizzes"].get(quiz, {"best": 0, "attempts": 0})
            if entry.get("attempt_id") != attempt_id:
                entry["attempts"] = entry.get("attempts", 0) + 1
                entry["attempt_id"] = attempt_id
            entry.update(best=max(entry.get("best", 0), score), last=score, answered=answered,
                         total=total, updated=time.strftime("%Y-%m-%dT%H:%M:%S"))
            data["quizzes"][quiz] = entry
        return dict(entry)

    def record(self, quiz: str, score: int, total: int) -> dict:
        """Save one complete attempt; keeps the best score and the last. Returns the entry."""
        return self.record_attempt(quiz, uuid.uuid4().hex, score, total, total)

    def reset(self, quizzes: list[str] | None = None) -> list[str]:
        """Forget the scores of ``quizzes`` (default: all). Returns the names removed."""
        with self._transaction() as data:
            names = list(data["quizzes"]) if quizzes is None else [
                name for name in quizzes if name in data["quizzes"]]
            for name in names:
                del data["quizzes"][name]
        return names


# -----------------------------------------------------------------------------------------------
# The quiz


@dataclass
class QuizResult:
    score: int
    total: int
    feedback: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join([*self.feedback, f"Score: {self.score}/{self.total}"])


@dataclass(frozen=True)
class Feedback:
    """What one answer to one question says."""

    number: int         # the question, from 1
    letter: str         # the choice given
    correct: bool
    first: bool         # the first answer to this question (the one that is scored)
    explanation: str

    def __str__(self) -> str:
        verdict = "Right." if self.correct else "Not this one."
        if self.correct and not self.first:
            verdict = "Right (your first answer is the one that counts for the score)."
        elif not self.correct:
            verdict += " Try another choice."
        return f"{self.number} ({self.letter}): {verdict} {self.explanation}"


class Quiz:
    """A named list of questions. ``show()`` displays it; ``answer(n, letter)`` checks one answer."""

    def __init__(self, name: str, questions: list[Question], store: ProgressStore | None = None):
        if not questions:
            raise ValueError("questions: expected at least one question, got none")
        self.name = name
        self.questions = list(questions)
        self.store = store if store is not None else ProgressStore()
        self.attempt_id = uuid.uuid4().hex
        self.first_answers: dict[int, str] = {}  # question number -> the first letter given
        self.save_error: str | None = None

    @classmethod
    def load(cls, name: str, store: ProgressStore | None = None,
             folder: str | Path | None = None) -> Quiz:
        """The quiz of bank ``name`` (e.g. ``"04_temperature"``), choices in display order."""
        return cls(name, [q.shuffled() for q in load_bank(name, folder)], store=store)

    # -- the logic, shared by the widgets and the plain version -------------------------------

    @property
    def score(self) -> int:
        """Questions whose first answer was right."""
        return sum(self.questions[n - 1].answer == letter
                   for n, letter in self.first_answers.items())

    def unanswered(self) -> list[int]:
        return [n for n in range(1, len(self.questions) + 1) if n not in self.first_answers]

    def _choice(self, number: int, letter: str) -> tuple[Question, Choice, str]:
        if isinstance(number, bool) or not isinstance(number, int) or not (
                1 <= number <= len(self.questions)):
            raise ValueError(
                f"answers: question numbers run from 1 to {len(self.questions)}, got {number!r}")
        question = self.questions[number - 1]
        valid = LETTERS[: len(question.choices)]
        if not isinstance(letter, str) or letter.strip().lower() not in valid:
            raise ValueError(f"answers[{number}]: expected one of {list(valid)}, got {letter!r}")
        letter = letter.strip().lower()
        return question, question.choices[valid.index(letter)], letter

    def check(self, number: int, letter: str, save: bool = True) -> Feedback:
        """Answer question ``number`` (from 1) with ``letter``; the first answer is scored and
        saved. Returns the feedback (does not print it)."""
        _, choice, letter = self._choice(number, letter)
        first = number not in self.first_answers
        if first:
            self.first_answers[number] = letter
            if save:
                self._save()
        return Feedback(number, letter, choice.correct, first, choice.explanation)

    def _save(self) -> None:
        try:
            self.store.record_attempt(self.name, self.attempt_id, self.score,
                                      len(self.first_answers), len(self.questions))
            self.save_error = None
        except (OSError, ValueError) as err:
            self.save_error = f"score not saved: {err}"

    def status(self) -> str:
        """``Score: 1/4 (first answers). Not answered yet: 3, 4.`` and where it is saved."""
        line = f"Score: {self.score}/{len(self.questions)} (first answers)."
        missing = self.unanswered()
        if missing:
            line += " Not answered yet: " + ", ".join(map(str, missing)) + "."
        else:
            line += " All answered."
        return line + (f" ({self.save_error})" if self.save_error
                       else f" Saved in {self.store.path}.")

    def answer(self, number: int, letter: str) -> None:
        """The plain version of a click: check, record, and print the feedback and the score."""
        feedback = self.check(number, letter)
        print(feedback)
        print(self.status())

    def grade(self, answers: dict[int, str], save: bool = True) -> QuizResult:
        """Score a whole form at once, ``{question number (from 1): letter}``, as one attempt;
        every answer given is explained."""
        check_type("answers", answers, dict, "a dict like {1: 'a'}")
        score, feedback = 0, []
        for number, letter in sorted(answers.items()):
            question, choice, letter = self._choice(number, letter)
            score += choice.correct
            mark = "right" if choice.correct else f"wrong (answer: {question.answer})"
            feedback.append(f"{number}. {mark}: {choice.explanation}")
        for number in range(1, len(self.questions) + 1):
            if number not in answers:
                feedback.append(f"{number}. not answered")
        if save:
            self.store.record(self.name, score, len(self.questions))
        return QuizResult(score, len(self.questions), feedback)

    def answer_key(self) -> dict[int, str]:
        return {n: q.answer for n, q in enumerate(self.questions, start=1)}

    # -- display ------------------------------------------------------------------------------

    def text(self) -> str:
        """The quiz as plain text (answers hidden), with how to answer it."""
        lines = [f"Concept check: {self.name}"]
        for number, question in enumerate(self.questions, start=1):
            lines.append(f"\n{number}. {question.prompt}")
            lines += [f"   ({LETTERS[i]}) {c.text}" for i, c in enumerate(question.choices)]
        lines.append('\nAnswer one question at a time with quiz.answer(1, "b"): each answer is '
                     "explained at once; your first answer to a question is the one scored.")
        lines.append(f"Scores are saved in {self.store.path} (see them with `tinyir progress`).")
        return "\n".join(lines)

    def show(self) -> None:
        """Click-to-check widgets where a Jupyter front end can render them; everywhere else the
        questions with their answers folded away (HTML: a static page, nbconvert) or as plain
        text (a terminal)."""
        if _widgets_available():
            self._show_widgets()
        elif _in_kernel():
            from IPython.display import display

            display({"text/plain": self.text(), "text/html": self.html()}, raw=True)
        else:
            print(self.text())

    def html(self) -> str:
        """The quiz as static HTML: each question, its choices, and the answer with every
        choice's explanation folded away in a ``<details>`` (for pages where widgets cannot run)."""
        parts = [f'<div class="tinyir-quiz-static"><p><b>Concept check</b>: '
                 f"{html.escape(self.name)}. <i>In Jupyter this is a click-to-check quiz; here, "
                 "answer each question yourself, then open its answer.</i></p><ol>"]
        for question in self.questions:
            choices = "".join(f"<li>{inline_markdown(c.text)}</li>" for c in question.choices)
            why = "".join(f"<li>({LETTERS[i]}) {'right' if c.correct else 'not this one'}: "
                          f"{inline_markdown(c.explanation)}</li>"
                          for i, c in enumerate(question.choices))
            parts.append(f'<li><p>{inline_markdown(question.prompt)}</p><ol type="a" '
                         f'style="list-style-type: lower-alpha">{choices}'
                         f"</ol><details><summary>Answer</summary><p>({question.answer})</p>"
                         f"<ul>{why}</ul></details></li>")
        parts.append("</ol></div>")
        return "".join(parts)

    def widget(self):
        """The quiz as an ipywidgets VBox (the logic behind each button is :meth:`check`)."""
        import ipywidgets as widgets

        summary = widgets.HTML(html.escape(self.status()))
        summary.add_class("tinyir-quiz-score")
        blocks = []
        for number, question in enumerate(self.questions, start=1):
            prompt = widgets.HTML(f"<b>{number}. {inline_markdown(question.prompt)}</b>")
            feedback = widgets.HTML("")
            feedback.add_class(f"tinyir-quiz-feedback-{number}")
            rows, buttons = [], []
            for i, choice in enumerate(question.choices):
                button = widgets.Button(description=LETTERS[i], tooltip="Check this choice",
                                        layout=widgets.Layout(width="3em", flex="0 0 auto"))
                button.add_class(f"tinyir-quiz-choice-{number}-{LETTERS[i]}")
                label = widgets.HTML(inline_markdown(choice.text),
                                     layout=widgets.Layout(flex="1 1 auto"))
                buttons.append(button)
                rows.append(widgets.HBox([button, label],
                                         layout=widgets.Layout(align_items="center")))

            def on_click(button, number=number, feedback=feedback, buttons=buttons):
                result = self.check(number, button.description)
                button.button_style = "success" if result.correct else "danger"
                css = "color: #1a7f37" if result.correct else "color: #b42318"
                feedback.value = f'<div style="{css}">{inline_markdown(str(result))}</div>'
                summary.value = html.escape(self.status())

            for button in buttons:
                button.on_click(on_click)
            blocks.append(widgets.VBox([prompt, *rows, feedback],
                                       layout=widgets.Layout(margin="0 0 12px 0")))
        header = widgets.HTML(f"<b>Concept check</b>: {html.escape(self.name)}. Click a choice "
                              "to check it. Your first answer to each question is scored and "
                              "saved locally.")
        box = widgets.VBox([header, *blocks, summary])
        box.add_class("tinyir-quiz")
        return box

    def _show_widgets(self) -> None:
        from IPython.display import display

        box = self.widget()
        # The widget view for front ends with the widget manager (it outranks the others there);
        # static HTML for pages without one (nbconvert, the book); the text for all the rest.
        display({"text/plain": self.text(), "text/html": self.html(),
                 "application/vnd.jupyter.widget-view+json": {
                     "version_major": 2, "version_minor": 0, "model_id": box.model_id}},
                raw=True)


_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_ITALIC = re.compile(r"(?<![\w*])\*(?=\S)([^*]+?)(?<=\S)\*(?![\w*])")


def inline_markdown(text: str) -> str:
    """Inline markdown (```code```, ``**bold**``, ``*italic*``) as HTML; everything else escaped."""
    parts = _CODE.split(text)  # even indices: prose, odd: code
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(f"<code>{html.escape(part)}</code>")
        else:
            prose = html.escape(part)
            prose = _BOLD.sub(r"<b>\1</b>", prose)
            out.append(_ITALIC.sub(r"<i>\1</i>", prose))
    return "".join(out)


def _in_kernel() -> bool:
    """True in a Jupyter kernel (which can show HTML), whether or not widgets can render."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"


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
