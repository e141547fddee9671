"""BEIR folders, the layout of BEIR and MTEB datasets: load a split, write a folder.

    folder/
        corpus.jsonl                 {"_id", "title", "text"} per line
        queries.jsonl                {"_id", "text"} per line
        qrels/<split>.tsv            query-id <tab> corpus-id <tab> score, with a header
        see_also.jsonl               {"_id", "see_also": [corpus ids]} per line (pydocs only)

``load_beir`` validates every line and names the file and the line of any problem;
``write_beir`` writes a whole folder atomically. A passage is ``title + " " + text``, as MTEB
joins them (``BeirDataset.doc_texts``, ``training_pairs``).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tinyir.atomic import atomic_folder


@dataclass(repr=False)
class BeirDataset:
    """One split of a BEIR-format dataset, in memory.

    corpus:  doc id -> {"title": str, "text": str}, in file order (N docs)
    queries: query id -> text, only the queries with a positive qrel in this split (Q queries)
    qrels:   query id -> {doc id: grade}, same keys as ``queries``; grade 0 entries are kept
    """

    corpus: dict[str, dict[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    name: str
    split: str

    @property
    def doc_ids(self) -> list[str]:
        """Doc ids in corpus order: row i of a doc-embedding matrix (N, D) is ``doc_ids[i]``."""
        return list(self.corpus)

    def doc_texts(self, join_title: bool = True) -> list[str]:
        """The N passages in corpus order, as ``title + " " + text`` (MTEB) or text only."""
        if not join_title:
            return [doc["text"] for doc in self.corpus.values()]
        return [_join_title(doc) for doc in self.corpus.values()]

    def subset(self, n_queries: int | None = None, n_docs: int | None = None,
               seed: int = 0) -> BeirDataset:
        """A smaller, deterministic copy for fast experiments on a CPU.

        Keeps ``n_queries`` queries drawn at random (all when None), every document judged for
        them, and random other documents as distractors until the corpus has ``n_docs`` (all
        when None). Retrieval over the subset is easier than over the whole corpus: compare
        numbers only within one subset.
        """
        rng = random.Random(seed)
        qids = sorted(self.queries)
        if n_queries is not None:
            if not isinstance(n_queries, int) or not 1 <= n_queries <= len(qids):
                raise ValueError(f"n_queries: expected an int in [1, {len(qids)}], got {n_queries!r}")
            qids = sorted(rng.sample(qids, n_queries))
        judged = {doc_id for qid in qids for doc_id in self.qrels[qid]}
        keep = set(self.corpus)
        if n_docs is not None:
            if not isinstance(n_docs, int) or not len(judged) <= n_docs <= len(self.corpus):
                raise ValueError(
                    f"n_docs: expected an int in [{len(judged)} (the judged documents), "
                    f"{len(self.corpus)}], got {n_docs!r}"
                )
            others = sorted(set(self.corpus) - judged)
            keep = judged | set(rng.sample(others, n_docs - len(judged)))
        return BeirDataset(
            corpus={doc_id: doc for doc_id, doc in self.corpus.items() if doc_id in keep},
            queries={qid: self.queries[qid] for qid in qids},
            qrels={qid: dict(self.qrels[qid]) for qid in qids},
            name=f"{self.name}-subset", split=self.split,
        )

    def __repr__(self) -> str:
        pairs = sum(len(rel) for rel in self.qrels.values())
        return (
            f"BeirDataset(name={self.name!r}, split={self.split!r}, corpus={len(self.corpus)}, "
            f"queries={len(self.queries)}, qrels={pairs})"
        )


def _join_title(doc: Mapping[str, str]) -> str:
    title = doc.get("title", "")
    return f"{title} {doc['text']}".strip() if title else doc["text"]


def _read_jsonl(path: Path, label: str, required: Sequence[str]) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for every non-blank line, checking JSON and required keys."""
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{label} line {line_no}: invalid JSON ({err.msg})") from err
            if not isinstance(obj, dict):
                raise ValueError(
                    f"{label} line {line_no}: expected a JSON object, got {type(obj).__name__}"
                )
            for key in required:
                if not isinstance(obj.get(key), str):
                    got = "missing" if key not in obj else type(obj[key]).__name__
                    raise ValueError(
                        f"{label} line {line_no}: expected key {key!r} with a string value, "
                        f"got {got}"
                    )
            yield line_no, obj


def _require_file(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise FileNotFoundError(f"{name} not found in {folder}")
    return path


def _load_corpus(folder: Path) -> dict[str, dict[str, str]]:
    corpus: dict[str, dict[str, str]] = {}
    path = _require_file(folder, "corpus.jsonl")
    for line_no, obj in _read_jsonl(path, "corpus.jsonl", ("_id", "text")):
        title = obj.get("title", "")
        if not isinstance(title, str):
            raise ValueError(
                f"corpus.jsonl line {line_no}: expected 'title' to be a string, "
                f"got {type(title).__name__}"
            )
        if obj["_id"] in corpus:
            raise ValueError(f"corpus.jsonl line {line_no}: duplicate _id {obj['_id']!r}")
        corpus[obj["_id"]] = {"title": title, "text": obj["text"]}
    return corpus


def _load_queries(folder: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    path = _require_file(folder, "queries.jsonl")
    for line_no, obj in _read_jsonl(path, "queries.jsonl", ("_id", "text")):
        if obj["_id"] in queries:
            raise ValueError(f"queries.jsonl line {line_no}: duplicate _id {obj['_id']!r}")
        queries[obj["_id"]] = obj["text"]
    return queries


def _parse_grade(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            return None
        return int(value) if value.is_integer() else None


def _load_qrels(
    folder: Path, split: str, corpus: Mapping[str, object], queries: Mapping[str, object]
) -> dict[str, dict[str, int]]:
    label = f"qrels/{split}.tsv"
    path = folder / "qrels" / f"{split}.tsv"
    if not path.is_file():
        available = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
        raise FileNotFoundError(f"{label} not found in {folder} (available splits: {available})")
    qrels: dict[str, dict[str, int]] = {}
    first = True
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            cols = line.split("\t")
            if len(cols) != 3:
                raise ValueError(
                    f"{label} line {line_no}: expected 3 tab-separated columns "
                    f"(query-id, corpus-id, score), got {len(cols)}"
                )
            query_id, doc_id, score = (col.strip() for col in cols)
            grade = _parse_grade(score)
            if first:
                first = False
                if grade is None:  # the optional BEIR header "query-id corpus-id score"
                    continue
            if grade is None:
                raise ValueError(f"{label} line {line_no}: score must be an integer, got {score!r}")
            if query_id not in queries:
                raise ValueError(
                    f"{label} line {line_no}: query-id {query_id!r} not found in queries.jsonl"
                )
            if doc_id not in corpus:
                raise ValueError(
                    f"{label} line {line_no}: corpus-id {doc_id!r} not found in corpus.jsonl"
                )
            qrels.setdefault(query_id, {})[doc_id] = grade
    return qrels


def load_beir(folder: str | Path, split: str = "test") -> BeirDataset:
    """Load one split of a BEIR-format folder (the format of BEIR and MTEB datasets).

    The folder holds ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``. Every line is
    validated; malformed input raises ``ValueError`` naming the file, the line and the problem
    (``FileNotFoundError`` for a missing file). Qrels with grade 0 are kept, but a query with no
    positive qrel in this split is dropped (from ``queries`` and ``qrels``).
    """
    folder = Path(folder)
    if not isinstance(split, str) or not split:
        raise ValueError(f"split: expected a split name such as 'test', got {split!r}")
    if not folder.is_dir():
        raise FileNotFoundError(f"folder: BEIR folder {folder} does not exist")
    corpus = _load_corpus(folder)
    all_queries = _load_queries(folder)
    qrels = _load_qrels(folder, split, corpus, all_queries)
    kept = {qid: rel for qid, rel in qrels.items() if any(grade > 0 for grade in rel.values())}
    queries = {qid: all_queries[qid] for qid in all_queries if qid in kept}
    qrels = {qid: kept[qid] for qid in queries}
    return BeirDataset(corpus=corpus, queries=queries, qrels=qrels, name=folder.name, split=split)


def load_see_also(folder: str | Path) -> dict[str, list[str]]:
    """Read ``see_also.jsonl``: doc id -> the doc ids its "See Also" section links to."""
    path = _require_file(Path(folder), "see_also.jsonl")
    links: dict[str, list[str]] = {}
    for line_no, obj in _read_jsonl(path, "see_also.jsonl", ("_id",)):
        targets = obj.get("see_also")
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise ValueError(
                f"see_also.jsonl line {line_no}: expected 'see_also' to be a list of strings, "
                f"got {targets!r}"
            )
        links[obj["_id"]] = targets
    return links


def training_pairs(
    ds_or_folder: BeirDataset | str | Path, split: str = "train"
) -> list[tuple[str, str]]:
    """Every positive (query text, passage) pair of a split, sorted by (query id, doc id).

    The passage is ``title + " " + text``. Given a ``BeirDataset``, its split must be ``split``.
    """
    if isinstance(ds_or_folder, BeirDataset):
        ds = ds_or_folder
        if ds.split != split:
            raise ValueError(
                f"split: expected the dataset's split {ds.split!r} (or pass a folder), "
                f"got {split!r}"
            )
    elif isinstance(ds_or_folder, str | Path):
        ds = load_beir(ds_or_folder, split)
    else:
        raise TypeError(
            "ds_or_folder: expected a BeirDataset or a folder path, "
            f"got {type(ds_or_folder).__name__}"
        )
    return [
        (ds.queries[qid], _join_title(ds.corpus[doc_id]))
        for qid in sorted(ds.qrels)
        for doc_id in sorted(ds.qrels[qid])
        if ds.qrels[qid][doc_id] > 0
    ]


def _write_jsonl(path: Path, rows: Sequence[Mapping[str, object]]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_beir_files(
    folder: Path,
    corpus: Mapping[str, Mapping[str, str]],
    queries: Mapping[str, str],
    qrels_by_split: Mapping[str, Mapping[str, Mapping[str, int]]],
) -> None:
    """Write the BEIR files into ``folder``, an existing folder the caller makes atomic (as
    ``write_beir`` and the pydocs builder do). Arguments and checks: see ``write_beir``."""
    for split, qrels in qrels_by_split.items():
        if not isinstance(split, str) or not re.fullmatch(r"[\w.-]+", split):
            raise ValueError(f"qrels_by_split: expected split names like 'test', got {split!r}")
        for qid, rel in qrels.items():
            if qid not in queries:
                raise ValueError(f"qrels_by_split[{split!r}]: query-id {qid!r} not in queries")
            for doc_id, grade in rel.items():
                if doc_id not in corpus:
                    raise ValueError(
                        f"qrels_by_split[{split!r}]: corpus-id {doc_id!r} not in corpus"
                    )
                if not isinstance(grade, int):
                    raise TypeError(
                        f"qrels_by_split[{split!r}][{qid!r}][{doc_id!r}]: expected an int grade, "
                        f"got {type(grade).__name__}"
                    )
    _write_jsonl(
        folder / "corpus.jsonl",
        [{"_id": i, "title": d.get("title", ""), "text": d["text"]} for i, d in corpus.items()],
    )
    _write_jsonl(folder / "queries.jsonl", [{"_id": i, "text": t} for i, t in queries.items()])
    (folder / "qrels").mkdir(exist_ok=True)
    for split, qrels in qrels_by_split.items():
        with (folder / "qrels" / f"{split}.tsv").open("w", encoding="utf-8", newline="\n") as out:
            out.write("query-id\tcorpus-id\tscore\n")
            for qid, rel in qrels.items():
                for doc_id, grade in rel.items():
                    out.write(f"{qid}\t{doc_id}\t{grade}\n")


def write_see_also(folder: Path, links: Mapping[str, Sequence[str]]) -> None:
    """Write ``see_also.jsonl`` into ``folder``: doc id -> the doc ids it links to, in order
    (what ``load_see_also`` reads back)."""
    _write_jsonl(
        folder / "see_also.jsonl",
        [{"_id": doc_id, "see_also": targets} for doc_id, targets in links.items()],
    )


def write_beir(
    folder: str | Path,
    corpus: Mapping[str, Mapping[str, str]],
    queries: Mapping[str, str],
    qrels_by_split: Mapping[str, Mapping[str, Mapping[str, int]]],
) -> None:
    """Write a BEIR folder atomically (a temporary sibling renamed into place).

    corpus: doc id -> {"title", "text"}; queries: query id -> text;
    qrels_by_split: split name -> {query id: {doc id: grade}}. Rows keep the mappings' order.
    Every qrel id must resolve, else ``ValueError`` (nothing is written).
    """
    with atomic_folder(Path(folder)) as tmp:
        write_beir_files(tmp, corpus, queries, qrels_by_split)
