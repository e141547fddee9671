"""Read what a sentence-transformers model card says about its training data.

The card of all-MiniLM-L6-v2 (installed with the course) lists its fine-tuning datasets in a
markdown table, "Dataset | Paper | Number of training tuples", closed by a **Total** row, and
ships ``data_config.json``: one entry per data file with its line count and the weight with
which training sampled it. The parsers below read both as they are, so a lesson quotes the
card's own numbers instead of retyping them:

- ``training_data_table(card)``: the table's rows as ``TrainingSource(name, pairs)`` and the
  stated total;
- ``training_budget(card)``: the steps and batch size the card's hyper-parameters state;
- ``group_data_config(entries)``: the data files grouped into datasets (Stack Exchange comes as
  one file per site), with summed lines and weights;
- ``match_sources(sources, groups)``: which group each table row is, matched by its exact
  count of pairs (names differ between the two files; counts do not).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")  # [text](url) -> text
_COUNT_HEADER = re.compile(r"number|tuples|pairs", re.IGNORECASE)
_BUDGET = re.compile(r"(\d+(?:\.\d+)?)\s*(k|M)?\s+steps\s+using\s+a\s+batch\s+size\s+of\s+(\d+)",
                     re.IGNORECASE)


@dataclass(frozen=True)
class TrainingSource:
    name: str   # the dataset cell, markdown links and emphasis removed
    pairs: int  # the card's "number of training tuples"


@dataclass(frozen=True)
class DataGroup:
    name: str    # the data file's name up to its first "/" and without ".jsonl.gz"
    lines: int   # summed over the group's files: one training tuple per line
    weight: int  # summed sampling weight
    files: int


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _plain(text: str) -> str:
    return " ".join(_LINK.sub(r"\1", text).replace("**", "").split())


def _count(text: str, row: str) -> int:
    digits = _plain(text).replace(",", "").replace("_", "").replace(" ", "")
    if not digits.isdigit():
        raise ValueError(f"card: row {row!r} has no count of pairs, got {text!r}")
    return int(digits)


def training_data_table(card: str) -> tuple[list[TrainingSource], int | None]:
    """Parse the training-data table of a model card: (rows in the card's order, stated total).

    The table is the first markdown table whose header has a column named like "Number of
    training tuples" (or "... pairs"); its first column is the dataset. A row whose first cell
    is "Total" (bold or not) gives the total, None when there is no such row. Raises ValueError
    when there is no such table or a row's count is not a number.

    >>> card = '''| Dataset | Paper | Number of training tuples |
    ... |---|:---:|:---:|
    ... | [Reddit](https://x) comments | [paper](https://y) | 726,484,430 |
    ... | **Total** | | **726,484,430** |'''
    >>> training_data_table(card)
    ([TrainingSource(name='Reddit comments', pairs=726484430)], 726484430)
    """
    lines = card.splitlines()
    for start, line in enumerate(lines):
        if not line.lstrip().startswith("|"):
            continue
        header = _cells(line)
        count_columns = [i for i, cell in enumerate(header) if _COUNT_HEADER.search(cell)]
        if not count_columns or len(header) < 2:
            continue
        column = count_columns[-1]
        rows, total = [], None
        for row_line in lines[start + 1:]:
            if not row_line.lstrip().startswith("|"):
                break
            cells = _cells(row_line)
            if all(set(cell) <= set(":- ") for cell in cells):  # the |---|:---:| separator
                continue
            if len(cells) <= column:
                raise ValueError(f"card: row {row_line.strip()!r} has {len(cells)} cells, "
                                 f"expected at least {column + 1}")
            name = _plain(cells[0])
            if name.lower() == "total":
                total = _count(cells[column], name)
            else:
                rows.append(TrainingSource(name, _count(cells[column], name)))
        if not rows:
            raise ValueError("card: the training-data table has no rows")
        return rows, total
    raise ValueError("card: no table with a 'Number of training tuples' (or pairs) column")


def training_budget(card: str) -> tuple[int, int]:
    """(steps, batch size) from a sentence like "We train the model during 100k steps using a
    batch size of 1024". Raises ValueError when the card has no such sentence.

    >>> training_budget("We train the model during 100k steps using a batch size of 1024.")
    (100000, 1024)
    """
    match = _BUDGET.search(card)
    if match is None:
        raise ValueError("card: no '<N> steps using a batch size of <B>' sentence")
    number, suffix, batch = match.groups()
    steps = float(number) * {"k": 1e3, "m": 1e6, None: 1}[suffix.lower() if suffix else None]
    return round(steps), int(batch)


def group_data_config(entries: Iterable[Mapping[str, object]]) -> dict[str, DataGroup]:
    """Group ``data_config.json`` entries ({"name", "lines", "weight"}) by dataset.

    A file "stackexchange_title_body/math.stackexchange.com.jsonl.gz" belongs to the group
    "stackexchange_title_body"; "gooaq_pairs.jsonl.gz" is its own group "gooaq_pairs".
    """
    groups: dict[str, DataGroup] = {}
    for i, entry in enumerate(entries):
        try:
            name, lines, weight = str(entry["name"]), int(entry["lines"]), int(entry["weight"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"entries: item {i} needs 'name', 'lines' and 'weight' as numbers, "
                             f"got {entry!r}") from err
        key = name.split("/")[0].removesuffix(".gz").removesuffix(".jsonl")
        old = groups.get(key, DataGroup(key, 0, 0, 0))
        groups[key] = DataGroup(key, old.lines + lines, old.weight + weight, old.files + 1)
    return groups


def match_sources(sources: Iterable[TrainingSource], groups: Mapping[str, DataGroup]
                  ) -> list[tuple[TrainingSource, DataGroup | None]]:
    """Pair each table row with the data_config group that has exactly as many lines as the row
    has pairs; None when there is none. Two rows with the same count take two different groups
    (in order), so no group is used twice."""
    unused = list(groups.values())
    matched = []
    for source in sources:
        group = next((g for g in unused if g.lines == source.pairs), None)
        if group is not None:
            unused.remove(group)
        matched.append((source, group))
    return matched
