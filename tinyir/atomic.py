"""Write a file or a folder all at once: readers see the old one or the new one, never half.

    write_atomic(Path("grades.csv"), text)          # a text file
    with atomic_file(Path("model.safetensors")) as tmp:
        save_file(weights, tmp)                      # any writer that takes a path

    with atomic_folder(Path("models/mine")) as tmp:
        save_file(weights, tmp / "model.safetensors")
        (tmp / "config.json").write_text(config)
    # models/mine now holds exactly what was written to tmp

The files go to a temporary sibling folder; only when the block ends without an error is it
renamed into place (an existing folder is first renamed aside, then removed). An error or an
interrupt leaves the old folder untouched and removes the temporary one. Datasets, checkpoints
and caches are all saved this way. A file goes the same way: a temporary sibling, flushed to
disk, then ``os.replace`` (grades, feedback, quiz progress, weights and configs).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_folder(folder: str | Path, keep_existing: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``folder``; on success it replaces ``folder`` by renames.

    ``keep_existing``: first writer wins instead (a cache entry that another process published
    while this one was building stays, and this one's copy is dropped).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"folder: expected a directory path, {folder} is a file")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private (0o700); saved folders are meant to be shared
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if keep_existing:
        try:
            os.rename(tmp, folder)  # fails when another writer's (non-empty) folder is there
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    old = tmp.with_name(tmp.name.replace(".tmp-", ".old-"))
    if folder.exists():  # a directory cannot be renamed onto a non-empty one: swap
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path of ``path``; on success it is renamed onto ``path``.

    Whatever the block writes to the yielded path is flushed to disk before the rename; an error
    removes it and leaves ``path`` as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        for attempt in range(20):  # Windows refuses to replace a file a reader holds open
            try:
                os.replace(tmp, path)
                break
            except PermissionError:
                if attempt == 19:
                    raise
                time.sleep(0.05)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``path`` with :func:`atomic_file`."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="\n")
