"""Docstring cleaning for pydocs: pure functions from a docstring to a (query, passage) pair
and to its "See Also" links. The parent process does all of this, after the walk."""

from __future__ import annotations

import inspect
import re
import textwrap
from collections.abc import Mapping, Sequence

# Cleaning thresholds (see make_entry).
MIN_SUMMARY_WORDS = 4
MAX_SUMMARY_WORDS = 40
MIN_BODY_CHARS = 50
MAX_BODY_CHARS = 2000

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
