import math

import pytest
import torch

from tinyir.course.models import validation_subset
from tinyir.course.sweeps import SweepBudget, softmax_stats, sweep_examples, train_tiny


def test_softmax_stats_uniform_when_scores_are_equal():
    stats = softmax_stats(torch.zeros(3, 8), torch.tensor([0, 3, 7]), temperature=0.05)
    assert stats["entropy"] == pytest.approx(math.log(8))
    assert stats["p_positive"] == pytest.approx(1 / 8)
    assert stats["hardest_share"] == pytest.approx(1 / 7)


def test_softmax_stats_matches_a_hand_computed_softmax():
    scores = torch.tensor([[0.9, 0.5, 0.1, 0.3]])
    tau = 0.1
    p = torch.softmax(scores.double() / tau, dim=-1)[0]
    stats = softmax_stats(scores, torch.tensor([0]), tau)
    assert stats["p_positive"] == pytest.approx(p[0].item())
    assert stats["hardest_share"] == pytest.approx((p[1] / p[1:].sum()).item())
    assert stats["entropy"] == pytest.approx(-(p * p.log()).sum().item())


def test_softmax_stats_temperature_sharpens_towards_the_hardest_negative():
    scores = torch.tensor([[0.8, 0.7, 0.2, 0.1, 0.0]])
    cold = softmax_stats(scores, torch.tensor([0]), 0.01)
    hot = softmax_stats(scores, torch.tensor([0]), 10.0)
    assert cold["hardest_share"] > 0.99
    assert hot["hardest_share"] == pytest.approx(1 / 4, abs=0.02)
    assert hot["entropy"] == pytest.approx(math.log(5), abs=0.01)


@pytest.mark.parametrize("scores, positive, tau, match", [
    (torch.zeros(4), torch.tensor([0]), 1.0, "scores"),
    (torch.zeros(2, 1), torch.tensor([0, 0]), 1.0, "scores"),
    (torch.zeros(2, 3), torch.tensor([0]), 1.0, "positive"),
    (torch.zeros(2, 3), torch.tensor([0, 1]), 0.0, "temperature"),
])
def test_softmax_stats_rejects_bad_arguments(scores, positive, tau, match):
    with pytest.raises(ValueError, match=match):
        softmax_stats(scores, positive, tau)


def test_budget_checks_and_counts_steps():
    assert SweepBudget(n_pairs=130, batch_size=64, epochs=2).steps == 6
    with pytest.raises(ValueError, match="batch_size"):
        SweepBudget(batch_size=0)
    with pytest.raises(ValueError, match="lr"):
        SweepBudget(lr=0)


def test_sweep_examples_are_seeded():
    budget = SweepBudget(n_pairs=50)
    first = sweep_examples(budget)
    assert len(first) == 50 and first == sweep_examples(budget)
    assert first != sweep_examples(SweepBudget(n_pairs=50, seed=1))
    with pytest.raises(ValueError, match="n_pairs"):
        sweep_examples(SweepBudget(n_pairs=10**7))


def test_train_tiny_trains_and_evaluates_with_the_same_start():
    budget = SweepBudget(n_pairs=64, batch_size=32, max_length_doc=32, eval_max_length=32)
    dataset = validation_subset(n_queries=10, n_docs=40)
    runs = [train_tiny(f"tau={t}", temperature=t, budget=budget, dataset=dataset, progress=False)
            for t in (0.05, 0.05, 1.0)]
    a, b, c = runs
    assert len(a.history.losses) == budget.steps
    assert set(a.metrics) == {"recall@10", "ndcg@10", "mrr@10"}
    assert 0.0 <= a.metrics["recall@10"] <= 1.0
    # Per query, the same numbers: their mean is the metric, one value per judged query.
    for name, values in a.by_query.items():
        assert set(values) == {q for q, rel in dataset.qrels.items() if any(r > 0 for r in rel.values())}
        assert sum(values.values()) / len(values) == pytest.approx(a.metrics[name], abs=1e-12)
    # Same settings, same seed: the same run. Another temperature: another run.
    assert a.history.losses == pytest.approx(b.history.losses)
    assert a.history.losses[0] != pytest.approx(c.history.losses[0])
    assert a.row()["temperature"] == 0.05 and c.settings["temperature"] == 1.0
    assert not a.model.training
