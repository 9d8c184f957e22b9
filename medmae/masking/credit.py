"""Per-token credit for the adversarial mask generator, and the reward numbers it logs.

Sample-level REINFORCE (one reward per crop: its mean hidden-token loss) has to find, in
the crop-to-crop spread of that reward, the small part that the choice of tokens makes.
On real scans the spread between crops (bright skull vs. flat white matter, bowel vs.
liver) dwarfs it, and with a few samples per step the policy stays uniform.

Per-token credit uses what the training step already measured: the loss of every hidden
token. Each hidden token's advantage is its loss minus the mean hidden loss of its own
crop (so crop difficulty cancels), divided by the root-mean-square of those differences
over the batch (so the step does not depend on the loss scale). The generator raises the
log-probability of hidden tokens that were harder than their crop's other hidden tokens
and lowers it for easier ones; visible tokens get no credit. This treats each token's
loss as independent of which other tokens are hidden (as loss-guided masking does).
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over ranks (``t`` itself outside torch.distributed)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t


def token_advantage(token_loss: torch.Tensor, hidden: torch.Tensor, used: torch.Tensor) -> torch.Tensor:
    """Per-token advantage (see the module docstring).

    token_loss: (B, N) per-token loss; hidden: (B, N) bool; used: (B,) bool, samples that
    train the generator. Returns (B, N) float64, zero outside ``hidden & used``, zero-mean
    over each sample's hidden tokens, unit root-mean-square over all of them (all ranks).
    """
    h = (hidden & used[:, None]).double()
    loss = token_loss.detach().double() * h
    mean = loss.sum(1) / h.sum(1).clamp(min=1)  # B
    diff = (loss - mean[:, None]) * h
    stats = all_reduce_sum(torch.stack([diff.pow(2).sum(), h.sum()]))
    rms = (stats[0] / stats[1].clamp(min=1)).sqrt().clamp(min=1e-12)
    return diff / rms


class RewardTracker:
    """Moving means of the reward on generator masks and on random masks, and their ratio.

    ``gain`` > 1 means the generator hides tokens the autoencoder reconstructs worse than
    a random mask's (averaged over many crops: the two come from different samples).
    """

    def __init__(self, decay: float = 0.95):
        self.decay = float(decay)
        self.policy: float | None = None
        self.random: float | None = None

    def state(self) -> list[float | None]:
        """The moving means, for checkpoints (a resumed run logs the same gains)."""
        return [self.policy, self.random]

    def load(self, state: list[float | None] | None) -> None:
        self.policy, self.random = state if state is not None else (None, None)

    def _mix(self, old: float | None, new: float) -> float:
        return new if old is None else self.decay * old + (1 - self.decay) * new

    def add(self, reward: torch.Tensor, policy: torch.Tensor, random: torch.Tensor) -> dict[str, float]:
        """reward (B,) per-sample rewards; policy, random (B,) bool: the samples masked by the
        generator / at random that count -> this batch's metrics (over all ranks)."""
        r = reward.double()
        stats = all_reduce_sum(torch.stack([(r * policy).sum(), policy.sum().double(),
                                            (r * random).sum(), random.sum().double()]))
        out: dict[str, float] = {}
        if float(stats[1]) > 0:
            out["adversarial/reward"] = float(stats[0] / stats[1])
            self.policy = self._mix(self.policy, out["adversarial/reward"])
        if float(stats[3]) > 0:
            out["adversarial/reward_random"] = float(stats[2] / stats[3])
            self.random = self._mix(self.random, out["adversarial/reward_random"])
        if self.policy is not None and self.random:
            out["adversarial/reward_gain"] = self.policy / self.random
        return out
