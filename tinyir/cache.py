"""A small on-disk cache for what notebooks compute once and reuse: embeddings, trained models.

Each entry is a folder named ``<name>-<hash of its key>`` under the cache directory
(``$TINYIR_CACHE_DIR``, default ``<repo>/.cache/tinyir``). The key is a JSON-able dict of
everything the result depends on (model, data checksum, hyper-parameters, seed), so a changed
input gives a new entry instead of a stale one, and a missing entry is rebuilt deterministically:
every notebook also runs on its own, in a fresh kernel.

Entries are written into a temporary folder and renamed into place, so an interrupted run never
leaves a half-written entry. Tensors are stored as safetensors, models with
``BiEncoder.save_pretrained`` (safetensors + JSON): no pickles.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from tinyir.atomic import atomic_folder

KEY_FILE = "key.json"


def cache_dir() -> Path:
    """The cache root: ``$TINYIR_CACHE_DIR`` or ``<repo>/.cache/tinyir``."""
    default = Path(__file__).resolve().parent.parent / ".cache" / "tinyir"
    return Path(os.environ.get("TINYIR_CACHE_DIR", default))


def entry_path(name: str, key: dict) -> Path:
    """The folder of one cache entry: ``<cache>/<name>-<first 12 hex of sha256(key)>``."""
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"name: expected a non-empty string without '/', got {name!r}")
    try:
        blob = json.dumps(key, sort_keys=True)
    except TypeError as err:
        raise TypeError(f"key: expected a JSON-serializable dict, got {key!r} ({err})") from err
    return cache_dir() / f"{name}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def cached_tensors(
    name: str, key: dict, build: Callable[[], dict[str, torch.Tensor]], verbose: bool = True
) -> dict[str, torch.Tensor]:
    """Return ``build()``'s tensors, computing them only when the entry is missing.

    build: returns {tensor name: tensor}; the tensors are stored on the CPU and returned there.
    """
    final = entry_path(name, key)
    if (final / KEY_FILE).is_file():
        return load_file(final / "tensors.safetensors")
    if verbose:
        print(f"[cache] building {final.name} (once; later runs load it)", file=sys.stderr)
    tensors = build()
    if not isinstance(tensors, dict) or not all(isinstance(t, torch.Tensor) for t in tensors.values()):
        raise TypeError("build: expected a dict of tensors")
    tensors = {k: t.detach().to("cpu").contiguous() for k, t in tensors.items()}
    with atomic_folder(final, keep_existing=True) as tmp:  # a concurrent builder's stays
        save_file(tensors, tmp / "tensors.safetensors")
        _write_key(tmp, key)
    return tensors


def cached_model(name: str, key: dict, build: Callable[[], object], load: Callable[[Path], object],
                 verbose: bool = True):
    """Return a model from the cache, or ``build()`` it and save it with ``save_pretrained``.

    build: trains and returns a model that has ``save_pretrained(folder)``.
    load: reads it back from a folder (e.g. ``BiEncoder.from_pretrained``).
    """
    final = entry_path(name, key)
    if (final / KEY_FILE).is_file():
        return load(final / "model")
    if verbose:
        print(f"[cache] building {final.name} (once; later runs load it)", file=sys.stderr)
    model = build()
    with atomic_folder(final, keep_existing=True) as tmp:
        model.save_pretrained(tmp / "model")
        _write_key(tmp, key)
    return model


def cached_folder(name: str, key: dict, write: Callable[[Path], object],
                  verbose: bool = True) -> Path:
    """The folder of an entry that ``write(folder)`` fills (a model unpacked from a checkpoint,
    say), written only when the entry is missing. Returns it."""
    final = entry_path(name, key)
    if not (final / KEY_FILE).is_file():
        if verbose:
            print(f"[cache] building {final.name} (once; later runs load it)", file=sys.stderr)
        with atomic_folder(final, keep_existing=True) as tmp:
            write(tmp / "model")
            _write_key(tmp, key)
    return final / "model"


def _write_key(folder: Path, key: dict) -> None:
    """The entry's key, written last: an entry without it is not complete (and not read)."""
    (folder / KEY_FILE).write_text(json.dumps(key, indent=2, sort_keys=True) + "\n")
