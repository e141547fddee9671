"""Model-card parsing: the training-data table, the training budget, data_config groups."""

from __future__ import annotations

import doctest
import json

import pytest

import tinyir.course.model_card
from tinyir.course.model_card import (
    DataGroup,
    TrainingSource,
    group_data_config,
    match_sources,
    training_budget,
    training_data_table,
)
from tinyir.pretrained import minilm_path

# A snippet in the card's own format: links, a paper column, bold total, a trailing space after
# the last pipe, a row with an unbalanced parenthesis and an empty paper cell.
SNIPPET = """#### Training data

We use the concatenation from multiple datasets.

| Dataset                                                  | Paper    | Number of training tuples  |
|--------------------------------------------------------|:--------:|:--------------------------:|
| [Reddit comments (2015-2018)](https://github.com/x) | [paper](https://arxiv.org/abs/1) | 726,484,430 |
| [MS MARCO](https://microsoft.github.io/msmarco/) triplets | [paper](https://doi.org/2) | 9,144,553 |
| AllNLI ([SNLI](https://a) and [MultiNLI](https://b) | [paper SNLI](https://c) | 277,230 |<SPACE>
| [Stack Exchange](https://h) Duplicate questions (bodies) | | 250,519 |
| **Total** | | **736,156,732** |

Text after the table | with a pipe | 12 |
""".replace("<SPACE>", " ")


def test_parses_the_snippet():
    rows, total = training_data_table(SNIPPET)
    assert rows == [
        TrainingSource("Reddit comments (2015-2018)", 726_484_430),
        TrainingSource("MS MARCO triplets", 9_144_553),
        TrainingSource("AllNLI (SNLI and MultiNLI", 277_230),
        TrainingSource("Stack Exchange Duplicate questions (bodies)", 250_519),
    ]
    assert total == 736_156_732 == sum(r.pairs for r in rows)


def test_table_without_total_and_other_tables_before_it():
    card = ("| a | b |\n|---|---|\n| 1 | 2 |\n\n"  # no count column: skipped
            "| Dataset | Number of pairs |\n|---|---|\n| x | 1_000 |\n| y | 20 |\n")
    rows, total = training_data_table(card)
    assert [r.pairs for r in rows] == [1000, 20] and total is None


@pytest.mark.parametrize(("card", "match"), [
    ("no table here", "no table"),
    ("| Dataset | Number of training tuples |\n|---|---|\n| x | many |\n", "'x'.*many"),
    ("| Dataset | Number of training tuples |\n|---|---|\n", "no rows"),
    ("| Dataset | Paper | Number of training tuples |\n|---|---|---|\n| x |\n", "cells"),
])
def test_bad_cards_say_what_is_wrong(card, match):
    with pytest.raises(ValueError, match=match):
        training_data_table(card)


def test_training_budget():
    assert training_budget("during 100k steps using a batch size of 1024") == (100_000, 1024)
    assert training_budget("for 1.5M steps using a batch size of 64.") == (1_500_000, 64)
    assert training_budget("We ran 500 steps using a batch size of 8") == (500, 8)
    with pytest.raises(ValueError, match="steps"):
        training_budget("trained for a while")


def test_group_and_match():
    entries = [
        {"name": "stackexchange_title_body/a.stackexchange.com.jsonl.gz", "lines": 10, "weight": 1},
        {"name": "stackexchange_title_body/b.stackexchange.com.jsonl.gz", "lines": 5, "weight": 2},
        {"name": "left.jsonl.gz", "lines": 7, "weight": 4},
        {"name": "right.jsonl.gz", "lines": 7, "weight": 4},
        {"name": "extra.jsonl.gz", "lines": 99, "weight": 9},
    ]
    groups = group_data_config(entries)
    assert groups["stackexchange_title_body"] == DataGroup("stackexchange_title_body", 15, 3, 2)
    assert set(groups) == {"stackexchange_title_body", "left", "right", "extra"}
    sources = [TrainingSource("SE", 15), TrainingSource("L", 7), TrainingSource("R", 7),
               TrainingSource("missing", 3)]
    matched = match_sources(sources, groups)
    assert [(s.name, g.name if g else None) for s, g in matched] == [
        ("SE", "stackexchange_title_body"), ("L", "left"), ("R", "right"), ("missing", None)]
    with pytest.raises(ValueError, match="item 0"):
        group_data_config([{"name": "x", "lines": "many", "weight": 1}])


def test_installed_minilm_card():
    """The installed card parses; its rows match data_config.json one to one, and the one
    dataset the table leaves out is exactly the gap between its rows and its stated total."""
    folder = minilm_path()
    rows, total = training_data_table((folder / "README.md").read_text(encoding="utf-8"))
    assert len(rows) > 20 and total is not None and total > 1e9
    assert rows[0].name.startswith("Reddit") and rows[0].pairs == max(r.pairs for r in rows)
    groups = group_data_config(json.loads((folder / "data_config.json").read_text()))
    matched = match_sources(rows, groups)
    assert all(group is not None for _, group in matched)
    used = {group.name for _, group in matched}
    left_out = [g for g in groups.values() if g.name not in used]
    assert sum(g.lines for g in left_out) == total - sum(r.pairs for r in rows)


def test_docstring_examples():
    result = doctest.testmod(tinyir.course.model_card, raise_on_error=False, verbose=False)
    assert result.attempted > 0 and result.failed == 0
