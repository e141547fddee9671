"""The artifact cache: builds once, reloads after, keys separate entries, writes atomically."""

from __future__ import annotations

import pytest
import torch

from tinyir import cache


@pytest.fixture(autouse=True)
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYIR_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_builds_once_then_loads(tmp_cache):
    calls = []

    def build():
        calls.append(1)
        return {"x": torch.arange(6.0).reshape(2, 3)}

    first = cache.cached_tensors("emb", {"model": "m", "seed": 0}, build, verbose=False)
    second = cache.cached_tensors("emb", {"seed": 0, "model": "m"}, build, verbose=False)
    assert calls == [1]
    assert torch.equal(first["x"], second["x"])
    assert not [p for p in tmp_cache.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_different_keys_are_different_entries():
    a = cache.cached_tensors("emb", {"seed": 0}, lambda: {"x": torch.zeros(1)}, verbose=False)
    b = cache.cached_tensors("emb", {"seed": 1}, lambda: {"x": torch.ones(1)}, verbose=False)
    assert a["x"].item() == 0 and b["x"].item() == 1


def test_failed_build_leaves_nothing(tmp_cache):
    def build():
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        cache.cached_tensors("emb", {"seed": 0}, build, verbose=False)
    assert list(tmp_cache.iterdir()) == []


def test_bad_key_and_name_are_named():
    with pytest.raises(TypeError, match="key"):
        cache.entry_path("emb", {"f": object()})
    with pytest.raises(ValueError, match="name"):
        cache.entry_path("a/b", {})


def test_an_entry_published_meanwhile_is_kept(tmp_cache):
    """A second process that finished building first: its entry stays, ours is dropped."""
    def build():
        # While "we" build, another process publishes the same entry.
        cache.cached_tensors("emb", {"k": 1}, lambda: {"x": torch.ones(2)}, verbose=False)
        return {"x": torch.zeros(2)}

    ours = cache.cached_tensors("emb", {"k": 1}, build, verbose=False)
    assert torch.equal(ours["x"], torch.zeros(2))  # the caller gets what it built
    again = cache.cached_tensors("emb", {"k": 1}, lambda: pytest.fail("rebuilt"), verbose=False)
    assert torch.equal(again["x"], torch.ones(2))  # the entry on disk is the first one published
    assert not [p for p in tmp_cache.iterdir() if p.name.startswith(".")]
