"""Quizzes: the banks follow the rules, answers carry no positional signal, each click is checked
and scored once, and the progress store never loses a score (atomic, locked, versioned)."""

from __future__ import annotations

import io
import json
import multiprocessing
import re
from collections import Counter
from pathlib import Path

import pytest

from tinyir.cli import main
from tinyir.course.quiz import (
    LETTERS,
    SCHEMA_VERSION,
    Choice,
    ProgressStore,
    Question,
    Quiz,
    bank_names,
    display_order,
    inline_markdown,
    load_bank,
)

ROOT = Path(__file__).resolve().parent.parent
LESSONS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CHAPTER_STEMS = {  # the chapter's concept check, word for word (issue 11)
    "bi-vs-cross-encoder": "A bi-encoder (embedding model) and a cross-encoder (reranker) both "
                           "score a query against a document. The fundamental architectural "
                           "difference is ...",
    "in-batch-contrastive": "Contrastive training of an embedding model with in-batch negatives "
                            "works by ...",
    "l2-normalization": "Why is L2-normalizing embedding vectors before computing similarity "
                        "almost always the right choice for retrieval?",
    "colbert-late-interaction": "ColBERT (late interaction) differs from a standard bi-encoder "
                                "by ...",
}
TEACHES = {"bi-vs-cross-encoder": "10_rerankers", "in-batch-contrastive": "03_in_batch_negatives",
           "l2-normalization": "07_normalization_and_similarity",
           "colbert-late-interaction": "11_colbert"}


def course() -> dict[str, list[Question]]:
    """Every bank as the student sees it: {name: questions in display order}."""
    return {name: Quiz.load(name, store=ProgressStore("/nonexistent")).questions
            for name in bank_names()}


# -- the old form (kept until every notebook uses Quiz.load) --------------------------------------

def make_quiz(tmp_path) -> Quiz:
    questions = [
        Question("InfoNCE loss at init with N candidates?", [
            Choice("0", False, "That is a perfect model."),
            Choice("log N", True, "Equal logits give the positive probability 1/N."),
        ]),
        Question("Cosine equals dot product when...", [
            Choice("vectors have unit norm", True, "Then the denominator is 1."),
            Choice("vectors are sparse", False, "Sparsity has nothing to do with norms."),
            Choice("always", False, "Scale a vector by 2 and the dot doubles, cosine does not."),
        ]),
    ]
    return Quiz("test_quiz", questions, store=ProgressStore(tmp_path / "progress.json"))


def test_grade_scores_and_explains(tmp_path):
    quiz = make_quiz(tmp_path)
    result = quiz.grade({1: "b", 2: "c"})
    assert (result.score, result.total) == (1, 2)
    assert "Equal logits" in result.feedback[0]
    assert "answer: a" in result.feedback[1]


def test_grade_mentions_unanswered_questions(tmp_path):
    result = make_quiz(tmp_path).grade({1: "b"})
    assert "2. not answered" in str(result)


def test_answer_key_scores_full_marks(tmp_path):
    quiz = make_quiz(tmp_path)
    assert quiz.grade(quiz.answer_key()).score == 2


def test_progress_keeps_best_and_last(tmp_path):
    quiz = make_quiz(tmp_path)
    quiz.grade({1: "b", 2: "a"})
    quiz.grade({1: "a"})
    data = json.loads((tmp_path / "progress.json").read_text())
    assert data["schema"] == SCHEMA_VERSION
    entry = data["quizzes"]["test_quiz"]
    assert (entry["best"], entry["last"], entry["attempts"], entry["total"]) == (2, 0, 2, 2)
    assert not list(tmp_path.glob(".progress-*"))  # no temp file left behind


def test_corrupt_store_is_reported_not_overwritten(tmp_path):
    (tmp_path / "progress.json").write_text("{not json")
    with pytest.raises(ValueError, match="progress.json"):
        make_quiz(tmp_path).grade({1: "a"})
    assert (tmp_path / "progress.json").read_text() == "{not json"


@pytest.mark.parametrize("answers, match", [
    ({3: "a"}, "question numbers run from 1 to 2"),
    ({1: "z"}, r"answers\[1\]: expected one of"),
])
def test_bad_answers_name_the_problem(tmp_path, answers, match):
    with pytest.raises(ValueError, match=match):
        make_quiz(tmp_path).grade(answers)


def test_question_needs_exactly_one_correct_choice():
    with pytest.raises(ValueError, match="exactly one correct"):
        Question("?", [Choice("a", True, ""), Choice("b", True, "")])


def test_text_fallback_hides_answers(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TINYIR_PLAIN_QUIZ", "1")
    make_quiz(tmp_path).show()
    out = capsys.readouterr().out
    assert "(b) log N" in out and "Equal logits" not in out
    assert 'quiz.answer(1, "b")' in out and str(tmp_path / "progress.json") in out


# -- the banks ------------------------------------------------------------------------------------

def test_every_lesson_has_a_bank_and_every_bank_a_lesson():
    banks = set(bank_names())
    assert set(LESSONS) <= banks, f"lessons without a bank: {set(LESSONS) - banks}"
    assert banks - set(LESSONS) == {"chapter_check"}


@pytest.mark.parametrize("name", bank_names())
def test_bank_follows_the_rules(name):
    questions = load_bank(name)
    ids = [q.id for q in questions]
    assert len(ids) == len(set(ids)), f"{name}: duplicate question ids"
    assert 2 <= len(questions) <= 6, f"{name}: {len(questions)} questions; about four expected"
    for q in questions:
        assert len(q.choices) >= 4, q.prompt
        texts = [c.text.strip().lower() for c in q.choices]
        assert len(set(texts)) == len(texts), f"duplicate choices in {q.prompt!r}"
        for c in q.choices:
            assert not re.search(r"\b(all|none|both) of (the )?(above|these|them)\b", c.text, re.I), c.text
            assert len(c.explanation) >= 20, f"explain {c.text!r} in {q.prompt!r}"
            assert c.explanation.strip() != c.text.strip()


def test_chapter_questions_are_asked_where_taught_and_together_at_the_end():
    chapter = {q.id: q for q in load_bank("chapter_check")}
    assert {qid: q.prompt for qid, q in chapter.items()} == CHAPTER_STEMS
    for qid, notebook in TEACHES.items():
        holders = [name for name in bank_names() if name != "chapter_check"
                   and any(q.prompt == CHAPTER_STEMS[qid] for q in load_bank(name))]
        assert holders == [notebook], (qid, holders)
        assert len(chapter[qid].choices) >= 4


def test_logistics_quiz_is_gone():
    prompts = " ".join(q.prompt for q in load_bank("00_start_here"))
    assert "instructor" not in prompts.lower() and "grade" not in prompts.lower()


def test_answer_letters_carry_no_signal():
    """Over the course, no letter holds more than a third of the right answers."""
    letters = Counter(q.answer for questions in course().values() for q in questions)
    total = sum(letters.values())
    assert max(letters.values()) <= total / 3, dict(letters)


def test_answer_length_carries_no_signal():
    """Picking the longest (or the k-th longest, or the shortest) choice scores at most 40 %."""
    ranks, total = Counter(), 0
    for questions in course().values():
        for q in questions:
            lengths = [len(c.text) for c in q.choices]
            order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
            ranks[("from longest", order.index(LETTERS.index(q.answer)))] += 1
            ranks[("from shortest", order[::-1].index(LETTERS.index(q.answer)))] += 1
            total += 1
    assert max(ranks.values()) <= 0.4 * total, ranks


def test_display_order_is_deterministic_and_seeded_by_the_text():
    assert display_order("same text", 5) == display_order("same text", 5)
    assert sorted(display_order("same text", 5)) == list(range(5))
    orders = {tuple(display_order(f"prompt {i}", 4)) for i in range(50)}
    assert len(orders) > 10  # the order varies with the text


def test_loaded_questions_are_in_display_order():
    quiz = Quiz.load("04_temperature", store=ProgressStore("/nonexistent"))
    for q, raw in zip(quiz.questions, load_bank("04_temperature"), strict=True):
        assert [c.text for c in q.choices] == [raw.choices[i].text
                                               for i in display_order(raw.prompt, 4)]
        assert q.choices[LETTERS.index(q.answer)].correct


def test_include_resolves_to_the_same_question():
    in_07 = next(q for q in load_bank("07_normalization_and_similarity")
                 if q.prompt == CHAPTER_STEMS["l2-normalization"])
    assert in_07 == next(q for q in load_bank("chapter_check") if q.id == "l2-normalization")


def test_bank_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="no quiz bank 'nope'"):
        load_bank("nope")
    choice = '[[question.choice]]\ntext = "{}"\ncorrect = {}\nwhy = "because"\n'
    (tmp_path / "x.toml").write_text('[[question]]\nid = "q"\nprompt = "?"\n'
                                     + choice.format("a", "true") + choice.format("b", "false"))
    with pytest.raises(ValueError, match="x:q: expected at least 4 choices"):
        load_bank("x", folder=tmp_path)


# -- click to check -------------------------------------------------------------------------------

def test_first_click_is_scored_and_every_click_explained(tmp_path):
    store = ProgressStore(tmp_path / "progress.json")
    quiz = Quiz.load("04_temperature", store=store)
    q1 = quiz.questions[0]
    wrong = next(LETTERS[i] for i, c in enumerate(q1.choices) if not c.correct)
    first = quiz.check(1, wrong)
    assert not first.correct and first.first and "Not this one" in str(first)
    assert first.explanation == q1.choices[LETTERS.index(wrong)].explanation
    again = quiz.check(1, q1.answer)
    assert again.correct and not again.first and "first answer" in str(again)
    assert quiz.score == 0
    quiz.check(2, quiz.questions[1].answer)
    assert quiz.score == 1 and quiz.unanswered() == [3, 4]
    entry = store.load()["04_temperature"]
    assert (entry["last"], entry["best"], entry["answered"], entry["attempts"]) == (1, 1, 2, 1)

    rerun = Quiz.load("04_temperature", store=store)  # running the cell again: a new attempt
    rerun.check(1, wrong)
    entry = store.load()["04_temperature"]
    assert (entry["last"], entry["best"], entry["attempts"], entry["total"]) == (0, 1, 2, 4)


def test_plain_answer_prints_feedback_and_what_is_left(tmp_path, capsys):
    quiz = Quiz.load("06_pooling", store=ProgressStore(tmp_path / "p.json"))
    quiz.answer(2, quiz.questions[1].answer)
    out = capsys.readouterr().out
    assert "2 (" in out and "Right." in out
    assert "Score: 1/4" in out and "Not answered yet: 1, 3, 4." in out


def test_unwritable_store_does_not_break_the_quiz(tmp_path):
    (tmp_path / "progress.json").write_text("[1, 2]")
    quiz = Quiz.load("06_pooling", store=ProgressStore(tmp_path / "progress.json"))
    assert quiz.check(1, "a") is not None
    assert "score not saved" in quiz.status()


def test_inline_markdown_renders_code_and_escapes_html():
    assert inline_markdown("pool `hidden[:, -1]` <b>") == (
        "pool <code>hidden[:, -1]</code> &lt;b&gt;")
    assert inline_markdown("**bold** and *it* but 2 * 3 * 4") == (
        "<b>bold</b> and <i>it</i> but 2 * 3 * 4")


def test_widget_clicks_answer_at_once(tmp_path):
    widgets = pytest.importorskip("ipywidgets")
    quiz = Quiz.load("06_pooling", store=ProgressStore(tmp_path / "p.json"))
    box = quiz.widget()
    assert isinstance(box, widgets.VBox)

    def find(widget, cls):
        if cls in getattr(widget, "_dom_classes", ()):
            return widget
        for child in getattr(widget, "children", ()):
            if (found := find(child, cls)) is not None:
                return found
        return None

    q2 = quiz.questions[1]
    assert "<code>hidden[:, -1]</code>" in find(box, "tinyir-quiz").children[2].children[0].value
    wrong = next(LETTERS[i] for i, c in enumerate(q2.choices) if not c.correct)
    find(box, f"tinyir-quiz-choice-2-{wrong}").click()
    feedback = find(box, "tinyir-quiz-feedback-2")
    assert "Not this one" in feedback.value
    find(box, f"tinyir-quiz-choice-2-{q2.answer}").click()
    assert "Right" in feedback.value
    assert "Score: 0/4" in find(box, "tinyir-quiz-score").value
    assert "Not answered yet: 1, 3, 4." in find(box, "tinyir-quiz-score").value


def test_widget_display_carries_a_text_fallback(tmp_path, monkeypatch):
    pytest.importorskip("ipywidgets")
    shown = []
    monkeypatch.setattr("tinyir.course.quiz._widgets_available", lambda: True)
    monkeypatch.setattr("IPython.display.display", lambda obj, raw=False: shown.append(obj))
    quiz = Quiz.load("06_pooling", store=ProgressStore(tmp_path / "p.json"))
    quiz.show()
    (bundle,) = shown
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"] == quiz.text()
    assert bundle["text/html"] == quiz.html()


def test_static_html_folds_every_answer_away(tmp_path, monkeypatch):
    """Where widgets cannot run (a static page) the quiz is HTML: every question and choice in
    view, each answer and explanation inside a closed <details>."""
    shown = []
    monkeypatch.setenv("TINYIR_PLAIN_QUIZ", "1")
    monkeypatch.setattr("tinyir.course.quiz._in_kernel", lambda: True)
    monkeypatch.setattr("IPython.display.display", lambda obj, raw=False: shown.append(obj))
    quiz = Quiz.load("06_pooling", store=ProgressStore(tmp_path / "p.json"))
    quiz.show()
    (bundle,) = shown
    page = bundle["text/html"]
    assert "application/vnd.jupyter.widget-view+json" not in bundle
    assert page.count("<details>") == page.count("</details>") == len(quiz.questions)
    assert "<details open" not in page  # folded
    for question in quiz.questions:
        visible, _, folded = page.partition(inline_markdown(question.prompt))[2].partition("<details>")
        assert all(inline_markdown(c.text) in visible for c in question.choices)
        answer = folded.partition("</details>")[0]
        assert f"({question.answer})" in answer
        assert all(inline_markdown(c.explanation) in answer for c in question.choices)
    assert not (tmp_path / "p.json").exists()  # showing it records nothing


# -- the progress store ---------------------------------------------------------------------------

def _hammer(path: str, name: str, n: int) -> None:
    store = ProgressStore(path)
    for i in range(n):
        store.record_attempt(name, f"{name}-{i}", i % 5, 4, 4)


def test_two_writers_at_once_lose_nothing(tmp_path):
    path = str(tmp_path / "progress.json")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_hammer, args=(path, name, 40)) for name in ("nb_a", "nb_b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    quizzes = ProgressStore(path).load()
    assert quizzes["nb_a"]["attempts"] == 40 and quizzes["nb_b"]["attempts"] == 40
    assert quizzes["nb_a"]["best"] == 4


def test_first_layout_is_migrated_and_newer_schema_refused(tmp_path):
    path = tmp_path / "progress.json"
    path.write_text(json.dumps({"old": {"best": 3, "last": 2, "total": 4, "attempts": 5}}))
    store = ProgressStore(path)
    assert store.load()["old"]["best"] == 3
    store.record("new", 1, 4)
    data = json.loads(path.read_text())
    assert data["schema"] == SCHEMA_VERSION and set(data["quizzes"]) == {"old", "new"}
    path.write_text(json.dumps({"schema": SCHEMA_VERSION + 1, "quizzes": {}}))
    with pytest.raises(ValueError, match="newer tinyir"):
        store.load()


def test_store_lives_in_tinyir_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYIR_HOME", str(tmp_path / "home"))
    assert ProgressStore().path == tmp_path / "home" / "progress.json"


# -- tinyir progress ------------------------------------------------------------------------------

@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYIR_HOME", str(tmp_path))
    quiz = Quiz.load("04_temperature")
    quiz.check(1, quiz.questions[0].answer)
    return tmp_path


def test_progress_prints_table_and_json(home, capsys):
    assert main(["progress"]) == 0
    out = capsys.readouterr().out
    assert str(home / "progress.json") in out
    assert re.search(r"04_temperature\s+1/4\s+1/4\s+1", out)
    assert re.search(r"05_hard_negatives\s+-\s+-\s+0\s+not started", out)
    assert main(["progress", "--json"]) == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert data["quizzes"]["04_temperature"]["best"] == 1
    assert "05_hard_negatives" in data["not_started"]


@pytest.mark.parametrize("reply", ["n\n", ""])
def test_progress_reset_asks_first(home, capsys, monkeypatch, reply):
    monkeypatch.setattr("sys.stdin", io.StringIO(reply))
    assert main(["progress", "--reset"]) == 1
    assert "Nothing deleted" in capsys.readouterr().err
    assert "04_temperature" in ProgressStore().load()


def test_progress_reset(home, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    assert main(["progress", "--reset"]) == 0
    assert ProgressStore().load() == {}
    Quiz.load("04_temperature").check(1, "a")
    assert main(["progress", "--reset", "--yes"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["reset"] == [
        "04_temperature"]
    assert ProgressStore().load() == {}
