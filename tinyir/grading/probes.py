"""Small helpers the grader runs inside the student's process, on the student's objects.

They exist for what cannot cross the process boundary as data: a gradient needs the autograd
graph, which lives where the student's function ran. Their results are checked in the grader
against its own values, like any other result.
"""

from __future__ import annotations

from typing import Any

import torch


def loss_and_grad(fn: Any, *args: Any, wrt: tuple[int, ...] = (0,), **kwargs: Any) -> dict:
    """Call ``fn(*args, **kwargs)`` with gradients on ``args[i]`` for i in ``wrt``; backward.

    Returns {"loss": the result detached, "connected": whether it required grad, "grads": [...]}.
    """
    args = list(args)
    for i in wrt:
        args[i] = args[i].detach().clone().requires_grad_(True)
    loss = fn(*args, **kwargs)
    connected = isinstance(loss, torch.Tensor) and loss.requires_grad
    if connected:
        loss.backward()
    return {"loss": loss.detach() if isinstance(loss, torch.Tensor) else loss,
            "connected": connected, "grads": [args[i].grad for i in wrt]}


def args_after_call(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, list[Any]]:
    """Call ``fn(*args, **kwargs)``; return its result and ``args`` as they are afterwards.

    The grader's arguments arrive as copies, so an in-place change is visible only here.
    """
    result = fn(*args, **kwargs)
    return result, list(args)


def tiny_biencoder(tokenizer_json: str, seed: int = 0, **kwargs: Any) -> Any:
    """``tinyir.course.models.tiny_biencoder`` on the tokenizer the grader sends as JSON text.

    The sandbox has no dataset to train the pydocs tokenizer on; the same tokenizer and seed give
    the same weights as the grader's reference model.
    """
    import tempfile
    from pathlib import Path

    from tinyir.biencoder import BiEncoder
    from tinyir.device import seed_everything
    from tinyir.encoder import Encoder, EncoderConfig
    from tinyir.tokenizer import Tokenizer

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tokenizer.json"
        path.write_text(tokenizer_json, encoding="utf-8")
        tokenizer = Tokenizer.from_file(path)
    max_length = kwargs.pop("max_length", 128)
    config = EncoderConfig.tiny(vocab_size=tokenizer.vocab_size, **kwargs)
    seed_everything(seed)
    return BiEncoder(Encoder(config), tokenizer, max_length=max_length)
