"""Quizzes: grading logic, explanations, and a progress store that never loses a score."""

from __future__ import annotations

import json

import pytest

from tinyir.course.quiz import Choice, ProgressStore, Question, Quiz


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


def test_answer_key_scores_full_marks(tmp_path):
    quiz = make_quiz(tmp_path)
    assert quiz.grade(quiz.answer_key()).score == 2


def test_progress_keeps_best_and_last(tmp_path):
    quiz = make_quiz(tmp_path)
    quiz.grade({1: "b", 2: "a"})
    quiz.grade({1: "a"})
    entry = json.loads((tmp_path / "progress.json").read_text())["test_quiz"]
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
