"""Grading tests for 05_training_loop.ipynb: batches, one training step, Recall@k, the loop, mining.

Beyond the self-checks: batches of many shapes (a last partial batch, one pair, no pair, a batch
larger than the data, every pair sharing one query), the greedy rule checked as a property, the
seed's independence from the global random state; a step against a reference step written here
(SGD, truncation, temperature, two steps in a row, the loss falling under AdamW); Recall@k
against a loop, with ties at the cut, k > N and queries without relevant documents; the loop
against a reference loop; mining against a brute-force reference with ties, several positives,
margins 0 and large, no filter and more negatives asked than exist. Models are the tiny
from-scratch bi-encoder without dropout, so every check takes well under a second.
"""

from __future__ import annotations

import functools
import random
import threading

import torch
import torch.nn.functional as F

from tinyir.grading.checks import assert_close, check

NOTEBOOK = "05_training_loop.ipynb"
# tinyir's own answers: the student's process cannot call them while this notebook is graded.
REFERENCES = [
    "tinyir.train:make_batches",
    "tinyir.train:train_biencoder",
    "tinyir.train:plain_step_loss",
    "tinyir.train:cached_step_loss",
    "tinyir.train:fit",
    "tinyir.negatives:mine_hard_negatives",
    "tinyir.metrics:recall_at_k",
]
# The first optimizer a process builds imports torch._dynamo (about a second): the student's
# process does it while it waits for its turn.
PRELOAD = ["torch._dynamo"]


def _unit(*shape: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


_BUILD = threading.Lock()  # students are graded in threads; the init seeds torch's global RNG


def _tiny(seed: int = 0):
    """The tiny from-scratch bi-encoder, here in the grader (for the reference runs)."""
    from tinyir.course.models import tiny_biencoder

    with _BUILD:
        return tiny_biencoder(seed=seed, dropout=0.0, max_length=64)


def _tiny_there(remote, seed: int = 0):
    """The same model, built in the student's process (where the student's code trains it)."""
    return remote.new("tinyir.grading.probes:tiny_biencoder", _tokenizer_json(), seed=seed,
                      dropout=0.0, max_length=64)


@functools.cache
def _tokenizer_json() -> str:
    import tempfile
    from pathlib import Path

    from tinyir.course.models import pydocs_tokenizer

    with tempfile.TemporaryDirectory() as folder:
        return pydocs_tokenizer().save(Path(folder) / "tokenizer.json").read_text(
            encoding="utf-8")


def _pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    words = ["sort", "list", "array", "matrix", "file", "read", "write", "string", "random",
             "mean", "plot", "axis", "tensor", "copy", "join", "split", "number", "date"]
    rng = random.Random(seed)
    return [(f"how to {rng.choice(words)} {rng.choice(words)} {i}",
             f"api.{rng.choice(words)}_{i}(x) {' '.join(rng.choice(words) for _ in range(6))}")
            for i in range(n)]


# -- make_batches ------------------------------------------------------------------------------


def _clashes(pairs, batch) -> bool:
    queries = [pairs[i][0] for i in batch]
    passages = [pairs[i][1] for i in batch]
    return len(set(queries)) < len(queries) or len(set(passages)) < len(passages)


def _check_batches(pairs, batch_size, batches, what) -> None:
    """Every pair once, sizes, no clash, non-empty, and the greedy rule."""
    assert isinstance(batches, list), f"{what}: expected a list of batches, got {type(batches)}"
    flat = [int(i) for batch in batches for i in batch]
    assert sorted(flat) == list(range(len(pairs))), (
        f"{what}: expected every index 0..{len(pairs) - 1} exactly once, got {sorted(flat)}")
    for number, batch in enumerate(batches):
        assert 1 <= len(batch) <= batch_size, (
            f"{what}: batch {number} holds {len(batch)} pairs (expected 1 to {batch_size})")
        assert not _clashes(pairs, batch), (
            f"{what}: batch {number} ({list(batch)}) repeats a query or a passage")
    for number, batch in enumerate(batches):
        if len(batch) == batch_size:
            continue
        texts = {pairs[i][0] for i in batch}, {pairs[i][1] for i in batch}
        for later in batches[number + 1:]:
            for i in later:
                assert pairs[i][0] in texts[0] or pairs[i][1] in texts[1], (
                    f"{what}: pair {i} waits for a later batch although batch {number} "
                    f"({list(batch)}) has room and holds neither its query nor its passage")


@check("training.make_batches", cases={
    "10 pairs, batch 3 (last batch short)": {"n": 10, "batch_size": 3},
    "32 pairs, batch 8": {"n": 32, "batch_size": 8},
    "5 pairs, batch 10": {"n": 5, "batch_size": 10},
    "7 pairs, batch 1": {"n": 7, "batch_size": 1},
    "1 pair": {"n": 1, "batch_size": 4},
})
def batches_cover_every_pair_once(make_batches, n, batch_size):
    """Distinct pairs: every pair once, all batches full but the last."""
    pairs = _pairs(n, seed=n)
    batches = make_batches(list(pairs), batch_size, 0)
    what = f"make_batches({n} pairs, batch_size={batch_size})"
    _check_batches(pairs, batch_size, batches, what)
    assert len(batches) == -(-n // batch_size), (
        f"{what}: expected {-(-n // batch_size)} batches (nothing clashes), got {len(batches)}")


@check("training.make_batches")
def no_pairs_no_batches(make_batches):
    """An empty list of pairs gives no batch."""
    got = make_batches([], 4, 0)
    assert list(got) == [], f"make_batches([], 4, 0): expected [], got {got!r}"


@check("training.make_batches", cases={"seed 0": {"seed": 0}, "seed 5": {"seed": 5}})
def batches_keep_duplicates_apart(make_batches, seed):
    """Queries with several positives and passages shared by several queries never meet."""
    pairs = _pairs(20, seed=1)
    pairs += [(pairs[0][0], "another answer of query 0"), (pairs[0][0], "a third answer"),
              ("a new query on passage 1", pairs[1][1]), ("one more on passage 1", pairs[1][1]),
              (pairs[2][0], pairs[3][1])]
    _check_batches(pairs, 4, make_batches(list(pairs), 4, seed),
                   f"make_batches(25 pairs with repeated queries and passages, 4, {seed})")


@check("training.make_batches")
def one_query_everywhere(make_batches):
    """Six pairs of one query: six batches of one pair."""
    pairs = [("the same query", f"passage {i}") for i in range(6)]
    batches = make_batches(list(pairs), 4, 0)
    _check_batches(pairs, 4, batches, "make_batches(6 pairs of one query, 4, 0)")
    assert len(batches) == 6, f"expected 6 batches of one pair, got {len(batches)}"


@check("training.make_batches")
def deterministic_for_a_seed(make_batches, remote):
    """The same seed gives the same batches, whatever the global random state."""
    pairs = _pairs(30, seed=2)
    remote.get("random:seed")(1)  # the global state of the student's process
    first = make_batches(list(pairs), 7, 3)
    remote.get("random:seed")(2)
    remote.get("torch:manual_seed")(2)
    second = make_batches(list(pairs), 7, 3)
    assert [list(b) for b in first] == [list(b) for b in second], (
        "make_batches with seed 3, called twice: expected the same batches (use "
        "random.Random(seed), not the global random module)")


@check("training.make_batches")
def shuffled(make_batches):
    """Another seed, another order; and not the input order."""
    pairs = _pairs(20, seed=3)
    orders = [[int(i) for b in make_batches(list(pairs), 20, seed) for i in b]
              for seed in (0, 1)]
    assert orders[0] != orders[1], "seeds 0 and 1 gave the same order: expected a shuffle"
    assert list(range(20)) not in orders, "the pairs kept their input order: shuffle them first"


# -- train_step --------------------------------------------------------------------------------


def reference_step(model, optimizer, queries, docs, temperature, max_length_query,
                   max_length_doc) -> float:
    """In-batch InfoNCE written out row by row: -log softmax of row i at column i."""
    q = F.normalize(model(model.tokenize(queries, max_length_query)), dim=-1)
    d = F.normalize(model(model.tokenize(docs, max_length_doc)), dim=-1)
    rows = [torch.logsumexp(q[i] @ d.T / temperature, dim=0) - q[i] @ d[i] / temperature
            for i in range(len(queries))]
    loss = torch.stack(rows).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def _weights_agree(model, reference, initial, what: str, rtol: float) -> None:
    """The student's weights moved as the reference's did, within ``rtol`` of the update's size.

    Two correct implementations differ by float rounding (another loss formula, another thread
    count); AdamW turns a rounding-level gradient difference on a coordinate whose gradient is
    near 0 into a difference of up to lr. So the rule compares the weights' difference with the
    size of the update itself: a missing zero_grad or a wrong temperature moves them by a
    whole update, rounding by far less (tinyir.testing's rule: scale with magnitude and depth).
    """
    got = model.state_dict()  # from the student's process, as data
    ref, init = reference.state_dict(), initial.state_dict()
    assert set(got) == set(ref), f"{what}: the model's parameters changed names"
    diff = max(((got[k].double() - ref[k].double()).abs().max().item()
                for k in ref if ref[k].is_floating_point()), default=0.0)
    moved = max(((ref[k].double() - init[k].double()).abs().max().item()
                 for k in ref if ref[k].is_floating_point()), default=0.0)
    assert diff <= rtol * moved + 1e-6, (
        f"{what}: the largest weight difference from the reference is {diff:.3g}, while the "
        f"reference's weights moved by up to {moved:.3g}")


STEP_CASES = {
    "B=4, tau=0.05": {"b": 4, "tau": 0.05, "lq": 32, "ld": 64},
    "B=2, tau=1": {"b": 2, "tau": 1.0, "lq": 32, "ld": 64},
    "B=6, tau=0.1, truncated at 6 and 10 tokens": {"b": 6, "tau": 0.1, "lq": 6, "ld": 10},
}


@check("training.train_step", cases=STEP_CASES)
def one_step_matches_reference(train_step, remote, b, tau, lq, ld):
    """One SGD step from a seeded model: same loss, same weights as the reference step."""
    pairs = _pairs(b, seed=b)
    queries, docs = [q for q, _ in pairs], [p for _, p in pairs]
    model, reference = _tiny_there(remote), _tiny()
    got = train_step(model, remote.new("torch.optim:SGD", model.parameters(), lr=0.5),
                     list(queries), list(docs), temperature=tau, max_length_query=lq,
                     max_length_doc=ld)
    expected = reference_step(reference, torch.optim.SGD(reference.parameters(), lr=0.5),
                              queries, docs, tau, lq, ld)
    assert isinstance(got, float), f"train_step must return a Python float, got {type(got)}"
    assert_close(got, expected, f"the loss of one step (B={b}, temperature={tau})", atol=1e-4)
    _weights_agree(model, reference, _tiny(), "after one step", rtol=1e-3)


@check("training.train_step")
def two_steps_do_not_accumulate_gradients(train_step, remote):
    """Two steps in a row: the second starts from zeroed gradients."""
    pairs = _pairs(6, seed=7)
    model, reference = _tiny_there(remote), _tiny()
    optimizer = remote.new("torch.optim:SGD", model.parameters(), lr=0.5)
    ref_optimizer = torch.optim.SGD(reference.parameters(), lr=0.5)
    for batch in (pairs[:3], pairs[3:]):
        queries, docs = [q for q, _ in batch], [p for _, p in batch]
        got = train_step(model, optimizer, list(queries), list(docs), temperature=0.05)
        expected = reference_step(reference, ref_optimizer, queries, docs, 0.05, 32, 64)
    assert_close(got, expected, "the loss of the second step", atol=1e-4)
    _weights_agree(model, reference, _tiny(), "after two steps (zero_grad before backward?)",
                   rtol=1e-3)


@check("training.train_step")
def loss_falls_on_a_toy_batch(train_step, remote):
    """Eight AdamW steps on one batch of 8 pairs: the loss falls by more than half."""
    pairs = _pairs(8, seed=8)
    queries, docs = [q for q, _ in pairs], [p for _, p in pairs]
    model = _tiny_there(remote)
    model.train()
    optimizer = remote.new("torch.optim:AdamW", model.parameters(), lr=1e-3)
    losses = [train_step(model, optimizer, list(queries), list(docs), temperature=0.05)
              for _ in range(8)]
    assert losses[-1] < 0.5 * losses[0], (
        f"losses over 8 steps: {[round(x, 3) for x in losses]}: expected the last below half "
        "the first")


# -- recall_at_k -------------------------------------------------------------------------------


def reference_recall(query_emb, doc_emb, relevant, k) -> float:
    total = 0.0
    for i in range(query_emb.shape[0]):
        scores = [float(query_emb[i].double() @ doc_emb[j].double())
                  for j in range(doc_emb.shape[0])]
        ranked = sorted(range(len(scores)), key=lambda j: (-scores[j], j))[:k]
        rel = set(relevant[i])
        total += len(rel & set(ranked)) / len(rel) if rel else 0.0
    return total / query_emb.shape[0]


@check("training.recall_at_k", cases={
    "Q=5, N=30, k=3": {"q": 5, "n": 30, "k": 3},
    "Q=1, N=7, k=1": {"q": 1, "n": 7, "k": 1},
    "Q=8, N=50, k=10": {"q": 8, "n": 50, "k": 10},
    "k > N": {"q": 4, "n": 6, "k": 10},
})
def recall_matches_reference(recall_at_k, q, n, k):
    """Random queries near their relevant documents, one to three relevant each."""
    doc_emb = _unit(n, 12, seed=n)
    near = doc_emb[[i % n for i in range(q)]] + 0.7 * _unit(q, 12, seed=n + 1)
    query_emb = F.normalize(near, dim=-1)
    relevant = [{i % n, (3 * i + 1) % n, (5 * i + 2) % n} if i % 3 == 0 else {i % n}
                for i in range(q)]
    got = recall_at_k(query_emb.clone(), doc_emb.clone(), [set(r) for r in relevant], k)
    expected = reference_recall(query_emb, doc_emb, relevant, k)
    assert_close(got, expected, f"recall_at_k with Q={q}, N={n}, k={k}", atol=1e-6)


@check("training.recall_at_k")
def recall_ties_go_to_the_lower_index(recall_at_k):
    """Equal scores at the cut: the lower document index is ranked first."""
    e = torch.eye(4)
    doc_emb = torch.stack([e[1], e[0], e[0], e[0], e[2]])  # docs 1, 2, 3 tie for query e0
    query_emb = e[:1].clone()
    for relevant, expected in (([{1}], 1.0), ([{2}], 1.0), ([{3}], 0.0), ([{2, 3}], 0.5)):
        got = recall_at_k(query_emb.clone(), doc_emb.clone(), relevant, 2)
        assert_close(got, expected, f"recall@2 with docs 1, 2, 3 tied and relevant={relevant}")


@check("training.recall_at_k")
def recall_query_without_relevant_counts_zero(recall_at_k):
    """A query with no relevant document has recall 0, and still counts in the mean."""
    doc_emb = _unit(10, 6, seed=11)
    query_emb = doc_emb[[0, 1]].clone()
    got = recall_at_k(query_emb, doc_emb.clone(), [{0}, set()], 3)
    assert_close(got, 0.5, "recall_at_k with relevant=[{0}, set()]")


@check("training.recall_at_k")
def recall_accepts_lists(recall_at_k):
    """Relevant documents given as lists work too."""
    doc_emb = _unit(12, 6, seed=12)
    query_emb = F.normalize(doc_emb[[2, 5]] + 0.3 * _unit(2, 6, seed=13), dim=-1)
    relevant = [[2, 7], [5]]
    got = recall_at_k(query_emb.clone(), doc_emb.clone(), relevant, 4)
    assert_close(got, reference_recall(query_emb, doc_emb, relevant, 4),
                 "recall_at_k with relevant as lists", atol=1e-6)


# -- train -------------------------------------------------------------------------------------


def reference_train(model, pairs, evaluate, epochs, batch_size, lr, temperature, seed,
                    make_batches):
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    losses, recalls = [], []

    def run_evaluation():
        model.eval()
        with torch.no_grad():
            recalls.append(float(evaluate(model)))

    run_evaluation()
    for epoch in range(1, epochs + 1):
        model.train()
        for batch in make_batches(list(pairs), batch_size, seed + epoch):
            if len(batch) > 1:
                losses.append(reference_step(model, optimizer, [pairs[i][0] for i in batch],
                                             [pairs[i][1] for i in batch], temperature, 32, 64))
        run_evaluation()
    model.eval()
    return {"loss": losses, "recall": recalls}


TRAIN_CASES = {
    "10 pairs, batch 4, 2 epochs": {"n": 10, "batch_size": 4, "epochs": 2, "seed": 3},
    "6 pairs, one repeated query, batch 3, 1 epoch": {"n": 6, "batch_size": 3, "epochs": 1,
                                                      "seed": 0, "repeat": True},
    "5 pairs, batch 2 (a lone last pair), 2 epochs": {"n": 5, "batch_size": 2, "epochs": 2,
                                                      "seed": 1},
}


@check("training.train", cases=TRAIN_CASES)
def train_matches_reference_loop(train, make_batches, remote, n, batch_size, epochs, seed,
                                 repeat=False):
    """Tiny model: the same losses, evaluations and final weights as a reference loop."""
    pairs = _pairs(n, seed=n)
    if repeat:
        pairs[1] = (pairs[0][0], pairs[1][1])
    model, reference = _tiny_there(remote), _tiny()
    got = train(model, list(pairs), lambda m: 0.25, epochs=epochs, batch_size=batch_size,
                lr=1e-3, temperature=0.1, seed=seed)
    expected = reference_train(reference, pairs, lambda m: 0.25, epochs, batch_size, 1e-3, 0.1,
                               seed, make_batches)
    assert isinstance(got, dict) and {"loss", "recall"} <= set(got), (
        f"expected a dict with 'loss' and 'recall', got {type(got).__name__} "
        f"{sorted(got) if isinstance(got, dict) else ''}")
    assert len(got["loss"]) == len(expected["loss"]), (
        f"expected {len(expected['loss'])} steps (batches of one pair skipped), got "
        f"{len(got['loss'])}")
    assert_close(torch.tensor([float(x) for x in got["loss"]]),
                 torch.tensor(expected["loss"]), "the loss of every step", atol=1e-3, rtol=1e-3)
    assert_close(torch.tensor([float(x) for x in got["recall"]]),
                 torch.tensor(expected["recall"]), "the evaluations")
    # AdamW turns rounding into up to 0.074 of the update for correct code (seeds 0-11 of the
    # 6-pair case); a missing zero_grad gives >= 0.37, a wrong lr or temperature >= 1.17.
    _weights_agree(model, reference, _tiny(), "after training", rtol=0.2)
    assert not model.training, "the model must be left in eval mode"


@check("training.train")
def evaluate_in_eval_mode_without_gradients(train, remote):
    """evaluate runs epochs + 1 times, in eval mode, without gradients; its values come back."""
    seen = []
    grad_enabled = remote.get("torch:is_grad_enabled")

    def evaluate(model):  # runs here, called back from the student's loop with a handle
        seen.append((model.training, grad_enabled()))
        return 0.5 + 0.1 * len(seen)

    history = train(_tiny_there(remote), _pairs(6, seed=4), evaluate, epochs=3, batch_size=3,
                    lr=1e-3, seed=0)
    assert seen == [(False, False)] * 4, (
        f"expected 4 calls of evaluate with (training=False, grad enabled=False), got {seen}")
    assert_close(torch.tensor([float(x) for x in history["recall"]]),
                 torch.tensor([0.6, 0.7, 0.8, 0.9]), "history['recall']")


@check("training.train")
def zero_epochs_only_evaluates(train, remote):
    """epochs=0: one evaluation, no step, the weights unchanged."""
    model, reference = _tiny_there(remote), _tiny()
    history = train(model, _pairs(4, seed=5), lambda m: 0.75, epochs=0, batch_size=2, lr=1e-3)
    assert list(history["loss"]) == [], f"expected no step, got {history['loss']}"
    assert [float(x) for x in history["recall"]] == [0.75], history["recall"]
    _weights_agree(model, reference, reference, "after 0 epochs", rtol=0.0)


# -- mine_hard_negatives -----------------------------------------------------------------------


def reference_mine(query_emb, doc_emb, positives, num_negatives, relative_margin):
    mined = []
    for i in range(query_emb.shape[0]):
        scores = [float(query_emb[i] @ doc_emb[j]) for j in range(doc_emb.shape[0])]
        pos = set(positives[i])
        ceiling = float("inf")
        if relative_margin is not None:
            ceiling = (1 - relative_margin) * max(scores[j] for j in pos)
        kept = [j for j in sorted(range(len(scores)), key=lambda j: (-scores[j], j))
                if j not in pos and scores[j] <= ceiling]
        mined.append(kept[:num_negatives])
    return mined


def _as_lists(mined) -> list[list[int]]:
    return [[int(j) for j in row] for row in mined]


MINE_CASES = {
    "Q=4, N=30, 3 negatives, margin 0.05": {"q": 4, "n": 30, "k": 3, "margin": 0.05},
    "Q=3, N=20, 5 negatives, margin 0": {"q": 3, "n": 20, "k": 5, "margin": 0.0},
    "Q=2, N=25, 4 negatives, margin 0.3": {"q": 2, "n": 25, "k": 4, "margin": 0.3},
    "Q=3, N=15, 4 negatives, no filter": {"q": 3, "n": 15, "k": 4, "margin": None},
    "Q=2, N=8, 20 negatives (more than exist)": {"q": 2, "n": 8, "k": 20, "margin": 0.1},
}


@check("mining.mine_hard_negatives", cases=MINE_CASES)
def mining_matches_brute_force(mine_hard_negatives, q, n, k, margin):
    """Queries near their positives (one or two each) against a brute-force reference."""
    doc_emb = _unit(n, 10, seed=100 + n)
    query_emb = F.normalize(doc_emb[:q] + 0.6 * _unit(q, 10, seed=200 + n), dim=-1)
    positives = [{i, n - 1 - i} if i % 2 else {i} for i in range(q)]
    got = mine_hard_negatives(query_emb.clone(), doc_emb.clone(), [set(p) for p in positives],
                              k, relative_margin=margin)
    expected = reference_mine(query_emb, doc_emb, positives, k, margin)
    assert _as_lists(got) == expected, (
        f"relative_margin={margin}, num_negatives={k}: expected {expected}, got "
        f"{_as_lists(got)}")


def _exact_unit_docs() -> torch.Tensor:
    """Unit vectors whose dot products are exact in float32 (so ties are real ties)."""
    h = 0.5
    return torch.tensor([
        [1.0, 0.0, 0.0, 0.0],   # 0: the positive of query e0 (score 1)
        [h, h, h, h],           # 1: score 0.5
        [0.0, 1.0, 0.0, 0.0],   # 2: score 0
        [h, h, -h, h],          # 3: score 0.5 (ties with 1)
        [h, -h, h, -h],         # 4: score 0.5 (ties with 1, 3)
        [-1.0, 0.0, 0.0, 0.0],  # 5: score -1
        [0.0, 0.0, 1.0, 0.0],   # 6: score 0 (ties with 2)
    ])


@check("mining.mine_hard_negatives")
def mining_ties_lower_index_first(mine_hard_negatives):
    """Equal scores are ranked lower index first."""
    docs, query = _exact_unit_docs(), torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    got = mine_hard_negatives(query.clone(), docs.clone(), [{0}], 5, relative_margin=0.1)
    assert _as_lists(got) == [[1, 3, 4, 2, 6]], f"expected [[1, 3, 4, 2, 6]], got {_as_lists(got)}"


@check("mining.mine_hard_negatives")
def mining_large_margin(mine_hard_negatives):
    """relative_margin=0.6: the ceiling is 0.4, so the three candidates at 0.5 are dropped."""
    docs, query = _exact_unit_docs(), torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    got = mine_hard_negatives(query.clone(), docs.clone(), [{0}], 3, relative_margin=0.6)
    assert _as_lists(got) == [[2, 6, 5]], f"expected [[2, 6, 5]], got {_as_lists(got)}"


@check("mining.mine_hard_negatives")
def mining_best_of_several_positives(mine_hard_negatives):
    """The ceiling comes from the best positive: positives {2, 0} give 0.9 x 1, not 0.9 x 0."""
    docs, query = _exact_unit_docs(), torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    got = mine_hard_negatives(query.clone(), docs.clone(), [[2, 0]], 2, relative_margin=0.1)
    assert _as_lists(got) == [[1, 3]], f"expected [[1, 3]], got {_as_lists(got)}"


@check("mining.mine_hard_negatives")
def mining_never_returns_a_positive(mine_hard_negatives):
    """Without a filter and asking for every document, the positives still never come back."""
    doc_emb = _unit(12, 8, seed=9)
    query_emb = doc_emb[[3, 7]].clone()
    positives = [{3, 4, 5}, {7}]
    got = _as_lists(mine_hard_negatives(query_emb, doc_emb.clone(), positives, 12,
                                        relative_margin=None))
    assert [len(row) for row in got] == [9, 11], (
        f"expected 9 and 11 negatives (all non-positives), got {[len(row) for row in got]}")
    assert not (set(got[0]) & positives[0] or set(got[1]) & positives[1]), (
        f"a positive came back as a negative: {got}")
    assert got == reference_mine(query_emb, doc_emb, positives, 12, None), got
