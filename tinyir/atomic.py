"""Write a folder all at once: readers see the old folder or the new one, never half of either.

    with atomic_folder(Path("models/mine")) as tmp:
        save_file(weights, tmp / "model.safetensors")
        (tmp / "config.json").write_text(config)
    # models/mine now holds exactly what was written to tmp

The files go to a temporary sibling folder; only when the block ends without an error is it
renamed into place (an existing folder is first renamed aside, then removed). An error or an
interrupt leaves the old folder untouched and removes the temporary one. Datasets, checkpoints
and caches are all saved this way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_folder(folder: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``folder``; on success it replaces ``folder`` by renames."""
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
    old = tmp.with_name(tmp.name.replace(".tmp-", ".old-"))
    if folder.exists():  # a directory cannot be renamed onto a non-empty one: swap
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)
