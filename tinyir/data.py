"""The course dataset ``pydocs``, built offline from the docstrings of installed libraries.

Every public function, class and method of the Python standard library (an allow-list of
user-facing modules), NumPy, SciPy, PyTorch, Matplotlib and scikit-learn gives one pair written by
the library's authors:

- query   = the docstring's one-line summary, e.g. "Return the cumulative sum of the elements
  along a given axis."
- passage = the object's qualified name (``title``) and its signature plus the rest of the
  docstring (``text``), with the summary removed.

Objects that share a summary become one query with all of them relevant (grade 1); the
"See Also" links of each object are kept apart as natural hard negatives (``cumsum`` vs ``sum``).

The result is stored in the BEIR layout that BEIR and MTEB datasets use::

    data/pydocs/
        corpus.jsonl        {"_id", "title", "text"} per line
        queries.jsonl       {"_id", "text"} per line
        qrels/{train,dev,test}.tsv   query-id <tab> corpus-id <tab> score, with a header
        see_also.jsonl      {"_id", "see_also": [corpus ids]} per line
        manifest.json       versions, counts and the sha256 of every file

The walk over the libraries runs in a child process (``python -m tinyir.data _walk``) so the
imports and their side effects never reach the caller (a notebook kernel); everything after the
walk is plain, deterministic text processing: two builds on the same pins are byte-identical.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import textwrap
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from tinyir.atomic import atomic_folder

DEFAULT_DATA_DIR: Path = (
    Path(os.environ["TINYIR_DATA_DIR"]).expanduser().resolve()
    if os.environ.get("TINYIR_DATA_DIR")
    else Path(__file__).resolve().parent.parent / "data"
)
PYDOCS_DIR: Path = DEFAULT_DATA_DIR / "pydocs"

# Bump whenever a change here changes the files a build writes: old folders then rebuild.
BUILDER_VERSION = 1

# ---------------------------------------------------------------------------------------------
# What is walked
# ---------------------------------------------------------------------------------------------

# Public, user-facing standard-library modules. Never modules with import side effects
# (antigravity, this, turtle, tkinter, idlelib): see _FORBIDDEN_MODULES.
STDLIB_MODULES: tuple[str, ...] = (
    "abc", "argparse", "array", "ast", "asyncio", "atexit", "base64", "binascii", "bisect",
    "builtins", "bz2", "calendar", "cmath", "cmd", "code", "codecs", "codeop", "collections",
    "collections.abc", "colorsys", "compileall", "concurrent.futures", "configparser", "contextlib",
    "contextvars", "copy", "copyreg", "cProfile", "csv", "ctypes", "dataclasses", "datetime",
    "decimal", "difflib", "dis", "doctest", "email", "email.generator", "email.header",
    "email.headerregistry", "email.message", "email.mime.multipart", "email.mime.text",
    "email.parser", "email.policy", "email.utils", "enum", "errno", "faulthandler", "fcntl",
    "filecmp", "fnmatch", "fractions", "ftplib", "functools", "gc", "getopt", "gettext", "glob",
    "graphlib", "grp", "gzip", "hashlib", "heapq", "hmac", "html", "html.parser", "http.client",
    "http.cookiejar", "http.cookies", "http.server", "imaplib", "importlib", "importlib.abc",
    "importlib.machinery", "importlib.metadata", "importlib.resources", "importlib.util", "inspect",
    "io", "ipaddress", "itertools", "json", "keyword", "linecache", "locale", "logging",
    "logging.config", "logging.handlers", "lzma", "mailbox", "math", "mimetypes", "mmap",
    "modulefinder", "multiprocessing", "multiprocessing.pool", "multiprocessing.shared_memory",
    "netrc", "numbers", "operator", "optparse", "os", "os.path", "pathlib", "pdb", "pickle",
    "pkgutil", "platform", "plistlib", "poplib", "pprint", "profile", "pstats", "pty", "pwd",
    "py_compile", "pyclbr", "queue", "quopri", "random", "re", "reprlib", "resource", "runpy",
    "sched", "secrets", "select", "selectors", "shelve", "shlex", "shutil", "signal", "smtplib",
    "socket", "socketserver", "sqlite3", "ssl", "stat", "statistics", "string", "stringprep",
    "struct", "subprocess", "symtable", "sys", "sysconfig", "tarfile", "tempfile", "termios",
    "textwrap", "threading", "time", "timeit", "token", "tokenize", "tomllib", "trace", "traceback",
    "tracemalloc", "tty", "types", "typing", "unicodedata", "unittest", "unittest.mock",
    "urllib.error", "urllib.parse", "urllib.request", "urllib.robotparser", "uuid", "warnings",
    "wave", "weakref", "wsgiref.simple_server", "wsgiref.util", "xml.dom", "xml.dom.minidom",
    "xml.etree.ElementTree", "xml.parsers.expat", "xml.sax", "xml.sax.saxutils", "xmlrpc.client",
    "xmlrpc.server", "zipapp", "zipfile", "zipimport", "zlib", "zoneinfo",
)  # fmt: skip

# Third-party libraries: import name -> (distribution name, public modules walked).
THIRD_PARTY_MODULES: dict[str, tuple[str, tuple[str, ...]]] = {
    "numpy": ("numpy", (
        "numpy", "numpy.char", "numpy.ctypeslib", "numpy.exceptions", "numpy.fft",
        "numpy.lib.array_utils", "numpy.lib.format", "numpy.lib.mixins", "numpy.lib.npyio",
        "numpy.lib.recfunctions", "numpy.lib.scimath", "numpy.lib.stride_tricks", "numpy.linalg",
        "numpy.ma", "numpy.polynomial", "numpy.polynomial.chebyshev", "numpy.polynomial.hermite",
        "numpy.polynomial.hermite_e", "numpy.polynomial.laguerre", "numpy.polynomial.legendre",
        "numpy.polynomial.polynomial", "numpy.random", "numpy.rec", "numpy.strings",
    )),
    "scipy": ("scipy", (
        "scipy.cluster.hierarchy", "scipy.cluster.vq", "scipy.constants", "scipy.datasets",
        "scipy.differentiate", "scipy.fft", "scipy.fftpack", "scipy.integrate",
        "scipy.interpolate", "scipy.io", "scipy.io.arff", "scipy.io.matlab", "scipy.io.wavfile",
        "scipy.linalg", "scipy.ndimage", "scipy.odr", "scipy.optimize", "scipy.signal",
        "scipy.signal.windows", "scipy.sparse", "scipy.sparse.csgraph", "scipy.sparse.linalg",
        "scipy.spatial", "scipy.spatial.distance", "scipy.spatial.transform", "scipy.special",
        "scipy.stats", "scipy.stats.contingency", "scipy.stats.mstats", "scipy.stats.qmc",
    )),
    "torch": ("torch", (
        "torch", "torch.accelerator", "torch.amp", "torch.autograd", "torch.autograd.functional",
        "torch.autograd.graph", "torch.backends.cudnn", "torch.compiler", "torch.cpu",
        "torch.cuda", "torch.distributions", "torch.export", "torch.fft", "torch.func",
        "torch.functional", "torch.futures", "torch.hub", "torch.jit", "torch.library",
        "torch.linalg", "torch.masked", "torch.monitor", "torch.mps", "torch.nested", "torch.nn",
        "torch.nn.attention", "torch.nn.functional", "torch.nn.init", "torch.nn.parameter",
        "torch.nn.utils", "torch.nn.utils.parametrize", "torch.nn.utils.prune",
        "torch.nn.utils.rnn", "torch.optim", "torch.optim.lr_scheduler", "torch.overrides",
        "torch.profiler", "torch.quasirandom", "torch.random", "torch.serialization",
        "torch.signal.windows", "torch.sparse", "torch.special", "torch.storage", "torch.types",
        "torch.utils.checkpoint", "torch.utils.data", "torch.utils.data.distributed",
        "torch.utils.hooks",
    )),
    "matplotlib": ("matplotlib", (
        "matplotlib", "matplotlib.animation", "matplotlib.artist", "matplotlib.axes",
        "matplotlib.axis", "matplotlib.backend_bases", "matplotlib.backend_tools",
        "matplotlib.bezier", "matplotlib.category", "matplotlib.cbook", "matplotlib.cm",
        "matplotlib.collections", "matplotlib.colorbar", "matplotlib.colorizer",
        "matplotlib.colors", "matplotlib.container", "matplotlib.contour", "matplotlib.dates",
        "matplotlib.figure", "matplotlib.font_manager", "matplotlib.gridspec", "matplotlib.hatch",
        "matplotlib.image", "matplotlib.layout_engine", "matplotlib.legend", "matplotlib.lines",
        "matplotlib.markers", "matplotlib.mlab", "matplotlib.offsetbox", "matplotlib.patches",
        "matplotlib.path", "matplotlib.patheffects", "matplotlib.projections",
        "matplotlib.projections.polar", "matplotlib.pyplot", "matplotlib.quiver",
        "matplotlib.rcsetup", "matplotlib.sankey", "matplotlib.scale", "matplotlib.spines",
        "matplotlib.streamplot", "matplotlib.style", "matplotlib.table", "matplotlib.text",
        "matplotlib.textpath", "matplotlib.ticker", "matplotlib.transforms", "matplotlib.tri",
        "matplotlib.units", "matplotlib.widgets",
    )),
    "sklearn": ("scikit-learn", tuple(f"sklearn.{name}" for name in (
        "base", "calibration", "callback", "cluster", "compose", "covariance",
        "cross_decomposition", "datasets", "decomposition", "discriminant_analysis", "dummy",
        "ensemble", "exceptions", "feature_extraction", "feature_extraction.image",
        "feature_extraction.text", "feature_selection", "frozen", "gaussian_process",
        "gaussian_process.kernels", "impute", "inspection", "isotonic", "kernel_approximation",
        "kernel_ridge", "linear_model", "manifold", "metrics", "metrics.cluster",
        "metrics.pairwise", "mixture", "model_selection", "multiclass", "multioutput",
        "naive_bayes", "neighbors", "neural_network", "pipeline", "preprocessing",
        "random_projection", "semi_supervised", "svm", "tree", "utils", "utils.arrayfuncs",
        "utils.class_weight", "utils.discovery", "utils.extmath", "utils.graph",
        "utils.metaestimators", "utils.multiclass", "utils.parallel", "utils.random",
        "utils.sparsefuncs", "utils.validation",
    ))),
}  # fmt: skip

DEFAULT_MODULES: tuple[str, ...] = tuple(
    sorted(STDLIB_MODULES + tuple(m for _, mods in THIRD_PARTY_MODULES.values() for m in mods))
)

_FORBIDDEN_MODULES = frozenset(
    {"antigravity", "this", "turtle", "turtledemo", "tkinter", "idlelib"}
)
# Module path parts that mark code not meant for users (compared without leading underscores).
_NON_PUBLIC_PARTS = frozenset(
    {"test", "tests", "testing", "conftest", "compat", "internal", "externals", "vendored",
     "generated"}
)  # fmt: skip
# Standard-library objects whose __module__ names an implementation module of another one.
_STDLIB_ALIASES = {
    "posix": "os",
    "posixpath": "os",
    "genericpath": "os",
    "nt": "os",
    "ntpath": "os",
}

# Cleaning thresholds (see make_entry).
MIN_SUMMARY_WORDS = 4
MAX_SUMMARY_WORDS = 40
MIN_BODY_CHARS = 50
MAX_BODY_CHARS = 2000
# Split buckets: sha256 of the query text modulo 100; [0, 15) test, [15, 23) dev, rest train.
TEST_BUCKETS = 15
DEV_BUCKETS = 8

SPLITS = ("train", "dev", "test")
DATA_FILES = (
    "corpus.jsonl", "queries.jsonl", "qrels/dev.tsv", "qrels/test.tsv", "qrels/train.tsv",
    "see_also.jsonl",
)  # fmt: skip
_PROGRESS_MARK = "@@tinyir-walk"


# ---------------------------------------------------------------------------------------------
# BEIR folders: load and write
# ---------------------------------------------------------------------------------------------


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


def _write_beir_files(
    folder: Path,
    corpus: Mapping[str, Mapping[str, str]],
    queries: Mapping[str, str],
    qrels_by_split: Mapping[str, Mapping[str, Mapping[str, int]]],
) -> None:
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
        _write_beir_files(tmp, corpus, queries, qrels_by_split)


# ---------------------------------------------------------------------------------------------
# Docstring cleaning (pure functions: the parent process does all of this)
# ---------------------------------------------------------------------------------------------

_NAME_CALL_RE = re.compile(r"[A-Za-z_][\w.]*[ \t]*\(")
_ROLE_RE = re.compile(r":[\w:+-]+:`([^`]+)`")
_ADDRESS_RE = re.compile(r" at 0x[0-9a-fA-F]+")
_MODULE_REPR_RE = re.compile(r"<module '([\w.]+)' from '[^']*'>")
_BAD_SUMMARY_START = re.compile(
    r"^(see\b|see also|alias\b|an alias|alias of|deprecated|refer to|same as|\.\.|>>>|:)",
    re.IGNORECASE,
)
_ABBREVIATIONS = frozenset(
    {"e.g.", "i.e.", "etc.", "vs.", "cf.", "approx.", "fig.", "eq.", "resp."}
)


def _paragraphs(lines: list[str]) -> list[tuple[int, int]]:
    """(start, end) line ranges of the blank-line separated paragraphs."""
    spans, start = [], None
    for i, line in enumerate(lines):
        if line.strip() and start is None:
            start = i
        elif not line.strip() and start is not None:
            spans.append((start, i))
            start = None
    if start is not None:
        spans.append((start, len(lines)))
    return spans


def _normalise(text: str) -> str:
    return " ".join(text.split())


def _take_signature(text: str) -> tuple[str, str] | None:
    """Split ``text`` into (leading call signature, rest) or return None if it has none.

    Recognises ``cumsum(a, axis=None)``, ``view(*shape) -> Tensor`` (possibly wrapped over
    lines) and ``D.clear() -> None.  Remove all items from D.`` (signature, then the summary).
    """
    match = _NAME_CALL_RE.match(text)
    if not match:
        return None
    depth = 0
    for i in range(match.end() - 1, len(text)):
        if text[i] in "([{":
            depth += 1
        elif text[i] in ")]}":
            depth -= 1
            if depth == 0:
                break
    else:
        return None
    signature, rest = text[: i + 1], text[i + 1 :]
    line, newline, after = rest.partition("\n")
    arrow = re.match(r"[ \t]*->", line)
    if arrow:
        parts = re.split(r"\.[ \t]{2,}", line, maxsplit=1)
        signature += parts[0].rstrip(". \t")
        if len(parts) == 2:
            return _normalise(signature), parts[1] + newline + after
        return _normalise(signature), after
    if line.strip() in ("", ":"):
        return _normalise(signature), after
    return None


def _role_target(match: re.Match) -> str:
    """``:func:`~numpy.cumsum``` -> "cumsum"; ``:ref:`text <target>``` -> "text"."""
    inner = match.group(1).strip()
    if inner.endswith(">") and "<" in inner:
        return inner[: inner.index("<")].strip()
    inner = inner.lstrip("!")
    if inner.startswith("~"):
        return inner[1:].rsplit(".", 1)[-1]
    return inner


def clean_rst(text: str) -> str:
    """Strip reST markup from one line: roles, ``literals``, `refs`; normalise whitespace."""
    text = _ROLE_RE.sub(_role_target, text)
    text = re.sub(r"``([^`]+)``", r"\1", text)
    text = re.sub(r"`([^`]+)`_?", r"\1", text)
    return _normalise(text)


def split_docstring(doc: str) -> tuple[str | None, str | None, str]:
    """Split a docstring into (signature line, summary paragraph, body).

    Leading call signatures (``cumsum(a, axis=None)``, as C extensions write them; several forms
    are joined by newlines) are returned apart and the next text becomes the summary. The
    summary is whitespace-normalised; the body keeps its lines (dedented, stripped). Returns
    (None, None, "") when there is no text.
    """
    text = inspect.cleandoc(doc).strip()
    signatures = []
    while text:
        taken = _take_signature(text)
        if taken is None:
            break
        signatures.append(taken[0])
        text = taken[1].strip()
    signature = "\n".join(signatures) or None
    lines = text.splitlines()
    spans = _paragraphs(lines)
    if not spans:
        return signature, None, ""
    start, end = spans[0]
    summary = _normalise(" ".join(lines[start:end]))
    body = textwrap.dedent("\n".join(lines[end:])).strip("\n").rstrip()
    return signature, summary, body


def first_sentence(paragraph: str) -> tuple[str, str]:
    """Split a paragraph after its first sentence: (first sentence, rest); rest may be ""."""
    for match in re.finditer(r"[.!?]\s+(?=[A-Z`:*(\"'])", paragraph):
        last_word = paragraph[: match.start() + 1].split()[-1]
        if last_word.lower() in _ABBREVIATIONS or re.fullmatch(r"[A-Z]\.", last_word):
            continue
        return paragraph[: match.start() + 1], paragraph[match.end() :]
    return paragraph, ""


def _is_summary(summary: str) -> bool:
    words = summary.split()
    return (
        MIN_SUMMARY_WORDS <= len(words) <= MAX_SUMMARY_WORDS
        and not _BAD_SUMMARY_START.match(summary)
        and _take_signature(summary) is None
        and re.search(r"[a-z]", summary) is not None
        and summary[0].isalnum()
        and not re.search(r"(^|\s)[-=~^]{3,}(\s|$)", summary)  # swallowed a section underline
    )


def _cap_body(body: str, limit: int = MAX_BODY_CHARS) -> str:
    if len(body) <= limit:
        return body
    cut = body.rfind("\n", 0, limit + 1)
    return body[: cut if cut > 0 else limit].rstrip()


def make_entry(title: str, doc: str | None, signature: str | None) -> tuple[str, str] | None:
    """(query text, passage text) for one object, or None when its docstring fails cleaning.

    title: the qualified name; signature: ``"(a, axis=None)"`` from ``inspect.signature`` or None.
    The query is the summary without reST markup; a summary over MAX_SUMMARY_WORDS words is cut
    to its first sentence (the rest opens the body).
    """
    if not isinstance(doc, str) or not doc.strip():
        return None
    doc_signature, summary, body = split_docstring(doc)
    if summary is None:
        return None
    summary = re.sub(r"^\[\*?[A-Za-z ]+\*?\]\s*", "", summary)  # matplotlib's "[*Discouraged*]"
    if len(summary.split()) > MAX_SUMMARY_WORDS:
        summary, rest = first_sentence(summary)
        body = f"{rest}\n\n{body}".strip() if rest else body
    query = clean_rst(summary)
    if not query or not _is_summary(query):
        return None
    body = _cap_body(_ADDRESS_RE.sub("", body))
    if len(body) < MIN_BODY_CHARS:
        return None
    name = title.rsplit(".", 1)[-1]
    if signature is not None:
        sig_line = name + _MODULE_REPR_RE.sub(r"<module '\1'>", _ADDRESS_RE.sub("", signature))
    else:
        sig_line = doc_signature
    text = f"{sig_line}\n{body}" if sig_line else body
    return query, text


def parse_see_also(doc: str) -> list[str]:
    """Names listed in a docstring's numpydoc "See Also" section or torch-style ``seealso``.

    Returns the raw names in written order, de-duplicated (``numpy.cumprod``, ``Axes.plot``).
    """
    lines = inspect.cleandoc(doc).splitlines()
    names: list[str] = []
    for i in range(len(lines) - 1):
        if lines[i].strip().lower() != "see also" or not re.fullmatch(r"\s*-{3,}\s*", lines[i + 1]):
            continue
        indent = len(lines[i]) - len(lines[i].lstrip())
        j = i + 2
        while j < len(lines):
            line = lines[j]
            if (
                j + 1 < len(lines)
                and re.fullmatch(r"\s*[-=]{3,}\s*", lines[j + 1])
                and line.strip()
            ):
                break  # the next section's header
            if line.strip() and len(line) - len(line.lstrip()) == indent:
                head = re.split(r"\s+:\s+|\s+:$", line.strip(), maxsplit=1)[0]
                names += [_name_of(part) for part in head.split(",")]
            j += 1
    text = "\n".join(lines)
    for block in re.finditer(r"\.\. seealso::(.*?)(?=\n\s*\n(?!\s)|\Z)", text, re.DOTALL):
        names += [_name_of(m.group(0)) for m in _ROLE_RE.finditer(block.group(1))]
    for sentence in re.finditer(
        r"\b[Ss]ee(?: also)?\s+((?::[\w:]+:`[^`]+`[\s,]*(?:and|or)?\s*)+)", text
    ):
        names += [_name_of(m.group(0)) for m in _ROLE_RE.finditer(sentence.group(1))]
    clean = [n for n in names if re.fullmatch(r"[A-Za-z_][\w.]*", n)]
    return list(dict.fromkeys(clean))


def _name_of(part: str) -> str:
    """One See Also item -> a dotted name: strips roles, backticks, ``~``, ``!`` and ``()``."""
    part = part.strip()
    match = _ROLE_RE.fullmatch(part)
    if match:
        part = match.group(1)
    part = part.strip("`").strip()
    if part.endswith(">") and "<" in part:
        part = part[part.index("<") + 1 : -1]
    part = part.lstrip("~!.").removesuffix("()")
    return part


_NAME_ALIASES = {
    "np": "numpy", "plt": "matplotlib.pyplot", "mpl": "matplotlib", "nn": "torch.nn",
    "F": "torch.nn.functional", "sp": "scipy",
}  # fmt: skip


def resolve_see_also(
    title: str, names: Sequence[str], name_to_id: Mapping[str, str], corpus_ids: set[str]
) -> list[str]:
    """Resolve See Also names written inside ``title``'s docstring to corpus ids.

    A name is tried as written, then relative to each enclosing scope of ``title`` (longest first:
    the class, its module, its package ...), then with ``np.``/``plt.``-style prefixes expanded.
    Only ids in ``corpus_ids`` other than ``title`` itself are kept, in written order.
    """
    parts = title.split(".")
    scopes = [".".join(parts[:k]) for k in range(len(parts), 0, -1)]
    found: list[str] = []
    for name in names:
        head, _, rest = name.partition(".")
        expanded = f"{_NAME_ALIASES[head]}.{rest}" if rest and head in _NAME_ALIASES else name
        for candidate in [expanded] + [f"{scope}.{expanded}" for scope in scopes]:
            target = name_to_id.get(candidate)
            if target is not None and target in corpus_ids:
                if target != title and target not in found:
                    found.append(target)
                break
    return found


# ---------------------------------------------------------------------------------------------
# The walk (runs in a child process: `python -m tinyir.data _walk RESULT_JSON MODULES_JSON`)
# ---------------------------------------------------------------------------------------------


def _library_of(module_name: str) -> str:
    """The library a module belongs to: its top-level package without leading underscores."""
    top = module_name.split(".")[0].lstrip("_")
    return _STDLIB_ALIASES.get(top, top)


def _is_public_module(module_name: str) -> bool:
    return not any(part.lstrip("_") in _NON_PUBLIC_PARTS for part in module_name.split("."))


def _object_module(obj: object) -> str | None:
    """The module that defines ``obj`` (routines of C types report it through their class)."""
    func = getattr(obj, "__func__", obj)
    module = getattr(func, "__module__", None)
    if not isinstance(module, str):
        owner = getattr(func, "__objclass__", None)
        bound = getattr(obj, "__self__", None)
        if owner is None and bound is not None and not inspect.ismodule(bound):
            owner = type(bound)
        module = getattr(owner, "__module__", None)
    return module if isinstance(module, str) else None


def _canonical_key(obj: object, module: str, fallback: str) -> str:
    """``obj.__module__ + "." + obj.__qualname__`` where meaningful, else ``fallback``."""
    if not (inspect.isclass(obj) or inspect.isroutine(obj)):  # ufuncs, distributions, ...
        digest = hashlib.sha256((getattr(obj, "__doc__", "") or "").encode()).hexdigest()[:12]
        return f"{type(obj).__module__}.{type(obj).__qualname__}:{digest}"
    qualname = getattr(getattr(obj, "__func__", obj), "__qualname__", None)
    if isinstance(qualname, str) and "<" not in qualname:
        return f"{module}.{qualname}"
    return fallback


def _title_rank(name: str, canonical: str) -> tuple[int, int, int, str]:
    """Sort key choosing an object's title among its public names (smallest wins)."""
    parent = name.rsplit(".", 1)[0]
    return (name != canonical, not canonical.startswith(parent + "."), name.count("."), name)


def _signature_text(obj: object, drop_self: bool) -> str | None:
    try:
        sig = inspect.signature(obj)
    except Exception:  # builtins without text signatures, odd callables: use the docstring's
        return None
    params = list(sig.parameters.values())
    if drop_self and params and params[0].name in ("self", "cls"):
        sig = sig.replace(parameters=params[1:])
    try:
        return str(sig)
    except Exception:
        return None


def _kind_of(obj: object) -> str | None:
    """Classify a module attribute: "class", "function", "object" or None (ignored).

    "object" is a documented callable instance: a ufunc, a SciPy distribution, a typing form.
    """
    if inspect.isclass(obj):
        return "class"
    if inspect.isroutine(obj):
        return "function"
    doc = getattr(obj, "__doc__", None)
    if callable(obj) and not inspect.ismodule(obj) and isinstance(doc, str):
        if type(obj).__name__ == "ufunc" or doc is not getattr(type(obj), "__doc__", None):
            return "object"
    return None


def _is_generated(func: object) -> bool:
    """True for functions made on the fly (a lambda or closure renamed into a class)."""
    qualname = getattr(func, "__qualname__", "")
    code = getattr(getattr(func, "__func__", func), "__code__", None)
    return (isinstance(qualname, str) and "<locals>" in qualname) or (
        code is not None and code.co_name == "<lambda>"
    )


def _collect_module_objects(module_name: str, found: dict[str, dict]) -> None:
    """Add the public functions, classes and documented callables of one module to ``found``
    (canonical key -> {"obj", "names", "kind", "library"})."""
    module = importlib.import_module(module_name)
    library = _library_of(module_name)
    numpy = sys.modules.get("numpy")
    names = set(dir(module))
    exported = getattr(module, "__all__", None)
    if isinstance(exported, list | tuple):
        names |= {n for n in exported if isinstance(n, str)}
    for name in sorted(names):
        if name.startswith("_"):
            continue
        try:
            obj = getattr(module, name)
        except Exception:
            continue
        kind = _kind_of(obj)
        if kind is None or type(obj).__name__ == "tensortype":  # torch's legacy FloatTensor & co
            continue
        if type(obj).__name__ == "ufunc":
            home = "numpy" if numpy is not None and getattr(numpy, name, None) is obj else None
            obj_module = home or module_name
        elif kind == "object":
            obj_module = type(obj).__module__
        else:
            obj_module = _object_module(obj)
        if obj_module is None or _library_of(obj_module) != library:
            continue
        if not _is_public_module(obj_module) or _is_generated(obj):
            continue
        public_name = f"{module_name}.{name}"
        key = _canonical_key(obj, obj_module, public_name)
        entry = found.setdefault(
            key, {"obj": obj, "names": set(), "kind": kind, "library": library}
        )
        entry["names"].add(public_name)


def _collect_methods(entry: dict, class_keys: set[str], methods: dict[str, dict]) -> None:
    """Add the public methods of one class to ``methods``: those defined on the class itself
    and on its private bases (a public base's methods are listed under that base)."""
    cls = entry["obj"]
    seen: set[str] = set()
    for distance, base in enumerate(inspect.getmro(cls)):
        if base is object:
            continue
        base_module = getattr(base, "__module__", None) or ""
        base_key = _canonical_key(base, base_module, "")
        walk_base = base is cls or (
            base_key not in class_keys
            and _library_of(base_module) == entry["library"]
            and _is_public_module(base_module)
        )
        for name in sorted(vars(base)):
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)  # a name defined on an earlier class of the MRO hides later ones
            raw = vars(base)[name]
            if not walk_base or isinstance(raw, property | functools.cached_property):
                continue
            if entry["library"] == "sklearn" and re.fullmatch(r"set_\w+_request", name):
                continue  # generated by scikit-learn's metadata routing
            try:
                attr = getattr(cls, name)
            except Exception:
                continue
            if not inspect.isroutine(attr) or _is_generated(attr):
                continue
            attr_module = _object_module(attr) or base_module
            if _library_of(attr_module) != entry["library"] or not _is_public_module(attr_module):
                continue
            key = _canonical_key(attr, attr_module, f"{base_key}.{name}")
            method = methods.setdefault(
                key,
                {"obj": attr, "names": set(), "titles": set(), "kind": "method",
                 "drop_self": not isinstance(raw, staticmethod | classmethod)},
            )  # fmt: skip
            method["names"].update(f"{alias}.{name}" for alias in entry["names"])
            # Title: under the class nearest to the definition, then the shortest name.
            method["titles"].add((distance, entry["title"].count("."), f"{entry['title']}.{name}"))


def _machine_path_scrubber() -> Callable[[str], str]:
    """Replace this machine's paths (interpreter, prefix, home, cwd) that defaults such as
    ``platform.architecture(executable=sys.executable)`` put into signatures."""
    paths = {
        sys.executable: "<python>", sys.prefix: "<prefix>", sys.exec_prefix: "<prefix>",
        sys.base_prefix: "<base-prefix>", os.path.expanduser("~"): "~", os.getcwd(): "<cwd>",
    }  # fmt: skip
    ordered = sorted((p for p in paths if len(p) > 1), key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(p) for p in ordered))
    return lambda text: pattern.sub(lambda m: paths[m.group(0)], text)


def _walk(modules: Sequence[str], report: Callable[[int, int, str], None]) -> dict:
    """Collect every public function, class and method of ``modules``.

    Returns {"objects": [{"title", "kind", "signature", "doc"}], "names": {public name or
    canonical name: title}, "failed": [modules that did not import]}, all sorted by title.
    ``report(i, n, module)`` is called after each module and once more at the end (i == n).
    """
    found: dict[str, dict] = {}
    failed: list[str] = []
    total = len(modules) + 1
    for index, module_name in enumerate(modules, start=1):
        try:
            _collect_module_objects(module_name, found)
        except Exception:  # a module that does not import on this machine is skipped
            failed.append(module_name)
        report(index, total, module_name)
    for key, entry in found.items():
        entry["title"] = min(entry["names"], key=lambda n, k=key: _title_rank(n, k))

    class_keys = {k for k, e in found.items() if e["kind"] == "class"}
    methods: dict[str, dict] = {}
    for entry in sorted(
        (e for e in found.values() if e["kind"] == "class"), key=lambda e: e["title"]
    ):
        try:
            _collect_methods(entry, class_keys, methods)
        except Exception:  # an exotic class (broken MRO, failing descriptors) is skipped
            continue
    for key, method in methods.items():
        if key in found:  # also reached as a module-level name, e.g. random.randint
            found[key]["names"] |= method["names"]
            continue
        method["title"] = min(method["titles"])[2]
        found[key] = method

    scrub = _machine_path_scrubber()
    objects, name_map = [], {}
    for key, entry in sorted(found.items(), key=lambda item: (item[1]["title"], item[0])):
        obj = entry["obj"]
        if entry["kind"] == "object" and type(obj).__name__ != "ufunc":
            signature = None  # the signature of __call__ says nothing about the object
        else:
            signature = _signature_text(obj, drop_self=entry.get("drop_self", False))
        doc = getattr(obj, "__doc__", None)
        objects.append(
            {"title": entry["title"], "kind": entry["kind"],
             "signature": None if signature is None else scrub(signature),
             "doc": scrub(doc) if isinstance(doc, str) else None}
        )  # fmt: skip
        for name in sorted(entry["names"] | {key}):
            name_map.setdefault(name, entry["title"])
    report(total, total, "methods and signatures")
    return {"objects": objects, "names": dict(sorted(name_map.items())), "failed": sorted(failed)}


def _walk_main(result_path: str, modules_json: str) -> None:
    """Child-process entry: walk, silence everything, write the result as JSON."""
    modules = json.loads(modules_json)
    progress_out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # stray prints, including from C code, go nowhere
    sys.stdout = open(os.devnull, "w", encoding="utf-8")  # and Python-level ones too
    warnings.simplefilter("ignore")  # deprecation notices of the walked libraries

    def report(index: int, total: int, module: str) -> None:
        progress_out.write(f"{_PROGRESS_MARK} {index} {total} {module}\n")

    result = _walk(modules, report)
    Path(result_path).write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")


def _run_walk(modules: Sequence[str], workdir: Path, progress: bool) -> dict:
    """Run the walk in a child process, driving a tqdm bar on stderr from its reports."""
    from tqdm import tqdm  # plain text on stderr, also inside notebooks (nbval-friendly)

    result_path = workdir / "walk.json"
    repo_root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env.update(
        PYTHONHASHSEED="0", PYTHONUTF8="1", MPLBACKEND="Agg", PYTHONWARNINGS="ignore",
        OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
            [repo_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]),
    )  # fmt: skip
    cmd = [
        sys.executable,
        "-m",
        "tinyir.data",
        "_walk",
        str(result_path),
        json.dumps(list(modules)),
    ]
    with (
        (workdir / "walk.stderr").open("w+", encoding="utf-8") as err,
        tqdm(total=len(modules) + 1, desc="pydocs walk", unit="module", file=sys.stderr,
             disable=not progress) as bar,
    ):  # fmt: skip
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=err, cwd=workdir, env=env, text=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(_PROGRESS_MARK):
                _, index, _total, module = line.rstrip("\n").split(" ", 3)
                bar.set_postfix_str(module, refresh=False)
                bar.update(int(index) - bar.n)
        code = proc.wait()
        if code != 0 or not result_path.is_file():
            err.seek(0)
            tail = err.read()[-3000:]
            raise RuntimeError(f"pydocs walk failed (exit code {code}):\n{tail}")
    return json.loads(result_path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# Build, manifest, validation
# ---------------------------------------------------------------------------------------------


def _split_of(query_text: str) -> str:
    bucket = int(hashlib.sha256(query_text.encode("utf-8")).hexdigest()[:8], 16) % 100
    if bucket < TEST_BUCKETS:
        return "test"
    return "dev" if bucket < TEST_BUCKETS + DEV_BUCKETS else "train"


def _query_id(query_text: str) -> str:
    return "q-" + hashlib.sha256(query_text.encode("utf-8")).hexdigest()[:12]


def assemble(walk: Mapping) -> dict:
    """Turn the walk's raw objects into corpus, queries, qrels per split and See Also links.

    Pure and deterministic: objects are processed in title order; an object whose passage text
    repeats an earlier one is dropped; objects sharing a summary share one query.
    """
    corpus: dict[str, dict[str, str]] = {}
    docs_by_query: dict[str, list[str]] = {}
    seen_texts: set[str] = set()
    raw_docs: dict[str, str] = {}
    for obj in sorted(walk["objects"], key=lambda o: o["title"]):
        entry = make_entry(obj["title"], obj["doc"], obj["signature"])
        if entry is None or obj["title"] in corpus:
            continue
        query, text = entry
        if text in seen_texts:
            continue
        seen_texts.add(text)
        corpus[obj["title"]] = {"title": obj["title"], "text": text}
        docs_by_query.setdefault(query, []).append(obj["title"])
        raw_docs[obj["title"]] = obj["doc"]
    queries: dict[str, str] = {}
    qrels_by_split: dict[str, dict[str, dict[str, int]]] = {split: {} for split in SPLITS}
    for text in sorted(docs_by_query, key=_query_id):
        qid = _query_id(text)
        if qid in queries:
            raise RuntimeError(f"query id collision for {text!r}")  # 48-bit ids: never in practice
        queries[qid] = text
        qrels_by_split[_split_of(text)][qid] = {doc_id: 1 for doc_id in sorted(docs_by_query[text])}
    ids = set(corpus)
    see_also = {
        doc_id: resolve_see_also(doc_id, parse_see_also(raw_docs[doc_id]), walk["names"], ids)
        for doc_id in corpus
    }
    return {
        "corpus": dict(sorted(corpus.items())),
        "queries": queries,
        "qrels": qrels_by_split,
        "see_also": {k: v for k, v in see_also.items() if v},
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_modules(modules: Sequence[str] | None) -> tuple[str, ...]:
    if modules is None:
        return DEFAULT_MODULES
    if isinstance(modules, str) or not all(isinstance(m, str) and m for m in modules):
        raise TypeError(f"modules: expected a list of module names, got {modules!r}")
    bad = sorted(m for m in modules if m.split(".")[0] in _FORBIDDEN_MODULES)
    if bad:
        raise ValueError(f"modules: {bad} have import side effects and are never walked")
    return tuple(sorted(set(modules)))


def _installed_packages(modules: Sequence[str]) -> dict[str, str]:
    """{distribution: installed version} for the third-party libraries among ``modules``."""
    packages = {}
    for top, (dist, _) in sorted(THIRD_PARTY_MODULES.items()):
        if any(m.split(".")[0] == top for m in modules):
            try:
                packages[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                packages[dist] = "not installed"
    return packages


def check_manifest(folder: str | Path, *, modules: Sequence[str] | None = None) -> list[str]:
    """Reasons why ``folder`` is stale or corrupt for the current environment; [] means OK.

    Checks the builder version, Python and package versions, the module list (a build restricted
    with ``modules=`` records it) and the sha256 of every data file.
    """
    folder = Path(folder)
    module_list = _check_modules(modules)
    path = folder / "manifest.json"
    if not path.is_file():
        return [f"no manifest ({path} does not exist)"]
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        return [f"manifest.json is unreadable ({err})"]
    if not isinstance(manifest, dict):
        return ["manifest.json is not a JSON object"]
    reasons = []
    if manifest.get("builder_version") != BUILDER_VERSION:
        reasons.append(
            f"manifest says builder_version {manifest.get('builder_version')}, "
            f"this builder is {BUILDER_VERSION}"
        )
    if manifest.get("python") != platform.python_version():
        reasons.append(
            f"manifest says python {manifest.get('python')}, "
            f"installed is {platform.python_version()}"
        )
    recorded = manifest.get("packages") if isinstance(manifest.get("packages"), dict) else {}
    for dist, version in _installed_packages(module_list).items():
        if recorded.get(dist) != version:
            reasons.append(f"manifest says {dist} {recorded.get(dist)}, installed is {version}")
    wanted = None if modules is None else list(module_list)
    if manifest.get("modules") != wanted:
        reasons.append(
            f"manifest was built from modules {manifest.get('modules') or 'default'}, "
            f"asked for {wanted or 'default'}"
        )
    hashes = manifest.get("sha256") if isinstance(manifest.get("sha256"), dict) else {}
    for name in DATA_FILES:
        file = folder / name
        if name not in hashes:
            reasons.append(f"manifest has no sha256 for {name}")
        elif not file.is_file():
            reasons.append(f"{name} is missing")
        elif _sha256(file) != hashes[name]:
            reasons.append(f"{name} sha256 mismatch")
    return reasons


def build_pydocs(
    out_dir: str | Path = PYDOCS_DIR,
    *,
    force: bool = False,
    progress: bool = True,
    modules: Sequence[str] | None = None,
) -> dict:
    """Build (or validate) pydocs in ``out_dir`` and return its manifest.

    If ``out_dir/manifest.json`` matches this builder, Python, the installed package versions
    and every file's sha256, the folder is returned as is; otherwise it is rebuilt and the
    reasons are printed to stderr. ``force=True`` always rebuilds. ``modules`` restricts the walk
    to a few modules (for tests and experiments; the default is :data:`DEFAULT_MODULES`).
    The new folder is written beside the old one and renamed into place when complete.
    """
    out_dir = Path(out_dir)
    module_list = _check_modules(modules)
    if not force:
        reasons = check_manifest(out_dir, modules=modules)
        if not reasons:
            return json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))
        print(f"pydocs: rebuilding {out_dir}: " + "; ".join(reasons), file=sys.stderr)
    with atomic_folder(out_dir) as tmp:
        with tempfile.TemporaryDirectory(prefix="tinyir-walk-") as workdir:
            walk = _run_walk(module_list, Path(workdir), progress)
        if walk["failed"]:
            print(
                f"pydocs: skipped modules that failed to import: {walk['failed']}", file=sys.stderr
            )
        data = assemble(walk)
        _write_beir_files(tmp, data["corpus"], data["queries"], data["qrels"])
        _write_jsonl(
            tmp / "see_also.jsonl",
            [{"_id": doc_id, "see_also": links} for doc_id, links in data["see_also"].items()],
        )
        counts = {"corpus": len(data["corpus"]), "queries": len(data["queries"])}
        counts |= {s: sum(len(r) for r in data["qrels"][s].values()) for s in SPLITS}
        manifest = {
            "name": "pydocs",
            "builder_version": BUILDER_VERSION,
            "python": platform.python_version(),
            "packages": _installed_packages(module_list),
            "counts": counts,
            "sha256": {name: _sha256(tmp / name) for name in DATA_FILES},
        }
        if modules is not None:
            manifest["modules"] = list(module_list)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    split_queries = {s: len(data["qrels"][s]) for s in SPLITS}
    print(
        f"pydocs: {counts['corpus']} passages, {counts['queries']} queries "
        f"(train {split_queries['train']}, dev {split_queries['dev']}, "
        f"test {split_queries['test']}); "
        f"pairs train {counts['train']}, dev {counts['dev']}, test {counts['test']} -> {out_dir}",
        file=sys.stderr,
    )
    return manifest


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "_walk":
        _walk_main(sys.argv[2], sys.argv[3])
    else:
        sys.exit("usage: python -m tinyir.data _walk RESULT_JSON MODULES_JSON (internal)")


def dataset_fingerprint(folder: str | Path = PYDOCS_DIR) -> str:
    """A short, stable id of a built BEIR folder's content (from its manifest's checksums).

    Use it in cache keys: embeddings or models computed from the data are rebuilt when the
    data changes. Raises FileNotFoundError when the folder has no manifest.
    """
    manifest_path = Path(folder) / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"folder: {folder} has no manifest.json; build it with `tinyir data build`"
        )
    checksums = json.loads(manifest_path.read_text(encoding="utf-8"))["sha256"]
    blob = json.dumps(checksums, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
