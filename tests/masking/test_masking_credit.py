"""Per-token credit: crop difficulty cancels; the reward tracker compares generator and random masks."""

import pytest
import torch

from medmae.masking.adversarial import AdversarialMasking
from medmae.masking.credit import RewardTracker, token_advantage


def test_token_advantage_cancels_crop_difficulty():
    loss = torch.tensor([[1.0, 3.0, 2.0, 9.0], [101.0, 103.0, 102.0, 0.0]])  # crop 1 is 100 harder
    hidden = torch.tensor([[True, True, True, False], [True, True, True, False]])
    adv = token_advantage(loss, hidden, torch.tensor([True, True]))
    torch.testing.assert_close(adv[0], adv[1])  # same ranking inside each crop, same credit
    assert adv[0, 3] == 0 and adv[1, 3] == 0  # visible tokens get none
    torch.testing.assert_close(adv.sum(1), torch.zeros(2, dtype=torch.float64))
    h = hidden.double()
    assert float((adv.pow(2) * h).sum() / h.sum()) == pytest.approx(1.0)
    only_first = token_advantage(loss, hidden, torch.tensor([True, False]))
    assert torch.equal(only_first[1], torch.zeros(4, dtype=torch.float64))


def test_reward_tracker_logs_the_gain_over_random_masks():
    t = RewardTracker(decay=0.5)
    m = t.add(torch.tensor([2.0, 4.0, 1.0]), torch.tensor([True, True, False]), torch.tensor([False, False, True]))
    assert m == {"adversarial/reward": 3.0, "adversarial/reward_random": 1.0, "adversarial/reward_gain": 3.0}
    m = t.add(torch.tensor([1.0, 1.0]), torch.tensor([True, True]), torch.tensor([False, False]))
    assert "adversarial/reward_random" not in m and m["adversarial/reward_gain"] == pytest.approx(2.0)


def test_max_logit_bounds_the_policy():
    s = AdversarialMasking(0.5, 1, (2, 2, 2), width=4, depth=1, max_logit=2.0)
    torch.nn.init.normal_(s.net.head.weight, std=100.0)
    logits = s.logits(torch.randn(2, 1, 8, 8, 8))
    assert logits.abs().max() <= 2.0 and logits.std() > 0.5
    with pytest.raises(ValueError, match="max_logit"):
        AdversarialMasking(0.5, 1, (2, 2, 2), max_logit=0.0)
    with pytest.raises(ValueError, match="credit"):
        AdversarialMasking(0.5, 1, (2, 2, 2), credit="batch")
