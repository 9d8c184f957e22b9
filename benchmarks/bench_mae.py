"""Training-step throughput and memory: medmae's MAE vs MONAI's MaskedAutoEncoderViT (CPU).

Same dimensions, batch, data and masking ratio (0.75) for both, side by side in one run.
A step is forward + loss + backward + AdamW. The two models are timed in alternating
rounds in one process (the fastest step counts: on a shared CPU the slower ones measure
the neighbours); memory is the exact size of the activations autograd saves for backward
(parameters, gradients and AdamW state are the same for both). Run:

    python benchmarks/bench_mae.py            # well under a minute on 2 cores
    python benchmarks/bench_mae.py --threads 2 --rounds 6

The GPU version (ViT-B, bf16, peak memory on the device, MFU) is ``gpu_mae.py``; it imports
the shared pieces from here.
"""

from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import dataclass

import torch

from medmae.models import MaskedAutoencoder3D
from medmae.models.mae import patch_stats
from medmae.models.flops import mae_train_step_flops
from medmae.tokens import patchify

RATIO = 0.75


@dataclass(frozen=True)
class Case:
    """One benchmark configuration (encoder / decoder dims as in MONAI's argument names)."""

    name: str
    img: int
    patch: int
    batch: int
    dim: int = 768
    depth: int = 12
    heads: int = 12
    dec_dim: int = 384
    dec_depth: int = 4
    dec_heads: int = 12
    mlp_ratio: int = 4

    @property
    def tokens(self) -> int:
        return (self.img // self.patch) ** 3

    def describe(self) -> str:
        return (f"{self.name}: {self.img}^3 patch {self.patch} ({self.tokens} tokens), batch {self.batch}, "
                f"enc {self.dim}x{self.depth} ({self.heads} heads, MLP {self.dim * self.mlp_ratio}), "
                f"dec {self.dec_dim}x{self.dec_depth} ({self.dec_heads} heads)")


CPU_CASES = {
    "s64p16": Case("s64p16", 64, 16, 4, dim=192, depth=4, heads=3, dec_dim=96, dec_depth=2, dec_heads=3),
    "s64p8": Case("s64p8", 64, 8, 2, dim=192, depth=4, heads=3, dec_dim=96, dec_depth=2, dec_heads=3),
}


def build_ours(c: Case) -> MaskedAutoencoder3D:
    return MaskedAutoencoder3D(
        c.img, c.patch, 1, c.dim, c.depth, c.heads, c.dec_dim, c.dec_depth, c.dec_heads,
        mlp_ratio=c.mlp_ratio, qkv_bias=True, norm_pix_loss=True,
    )


def build_monai(c: Case):
    from monai.networks.nets import MaskedAutoEncoderViT

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # meshgrid indexing warning inside MONAI
        return MaskedAutoEncoderViT(
            in_channels=1, img_size=c.img, patch_size=c.patch, hidden_size=c.dim, mlp_dim=c.dim * c.mlp_ratio,
            num_layers=c.depth, num_heads=c.heads, masking_ratio=RATIO, decoder_hidden_size=c.dec_dim,
            decoder_mlp_dim=c.dec_dim * c.mlp_ratio, decoder_num_layers=c.dec_depth, decoder_num_heads=c.dec_heads,
            qkv_bias=True,
        )


def random_mask(batch: int, n: int, device) -> torch.Tensor:
    """(B, N) bool hiding exactly round(RATIO * N) tokens per sample (drawn on ``device``)."""
    order = torch.rand(batch, n, device=device).argsort(1)
    return order < round(RATIO * n)


def ours_loss(model, x, autocast_dtype=None) -> torch.Tensor:
    """Forward of our MAE with a fresh mask (drawn inside the step, as MONAI draws its own)."""
    mask = random_mask(x.shape[0], model.num_tokens, x.device)
    with torch.autocast(x.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        return model(x, mask).loss


def monai_loss(model, x, patch: int) -> torch.Tensor:
    """Forward of MONAI's MAE with the same loss: masked-token MSE on the norm-pix target."""
    pred, mask = model(x)
    target = patchify(x.float(), (patch,) * 3)
    mean, std = patch_stats(target, 1)  # the same target code as ours
    target = (target - mean[..., 0]) / std[..., 0]
    token_loss = (pred.float() - target).pow(2).mean(-1)
    return (token_loss * mask).sum() / mask.sum()


def activation_bytes(forward, params) -> int:
    """Bytes of the tensors autograd saves for backward during ``forward()`` (parameters
    excluded): the activation memory of a training step, exact and free of timing noise."""
    param_ptrs = {p.untyped_storage().data_ptr() for p in params}
    saved: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in param_ptrs:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = forward()
    loss.backward()
    return sum(saved.values())


def timed_steps(forward, params, steps: int, warmup: int, sync=lambda: None) -> list[float]:
    """Seconds of each training step (forward, backward, AdamW) after ``warmup`` steps."""
    opt = torch.optim.AdamW(params, lr=1e-4)
    times = []
    for i in range(warmup + steps):
        sync()
        start = time.perf_counter()
        forward().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def cpu_measure(case: Case, rounds: int, steps: int) -> list[tuple[Case, str, float, float, None]]:
    """Both models in this process, timed in alternating rounds (a load spike on a shared
    CPU then hits both); each model's fastest step and its saved-activation MiB."""
    torch.manual_seed(0)
    x = torch.randn(case.batch, 1, case.img, case.img, case.img)
    models = {"ours": build_ours(case), "monai": build_monai(case)}
    forwards = {"ours": lambda: ours_loss(models["ours"], x), "monai": lambda: monai_loss(models["monai"], x, case.patch)}
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(rounds):
        for k in models:
            times[k] += timed_steps(forwards[k], models[k].parameters(), steps, warmup=1)
    return [(case, k, min(times[k]), activation_bytes(forwards[k], models[k].parameters()) / 2**20, None)
            for k in models]


def flops_per_step(case: Case) -> float:
    with torch.device("meta"):
        model = build_ours(case)
    return mae_train_step_flops(model, case.batch, RATIO)


def print_table(rows: list[tuple[Case, str, float, float, float | None]], mem_label: str) -> None:
    """rows: (case, model, sec/step, memory, MFU or None) -> a table with ours/MONAI ratios."""
    print(f"\n{'config':<9} {'model':<7} {'vol/s':>9} {'ms/step':>9} {mem_label:>14} {'MFU':>7}")
    by_case: dict[str, dict[str, tuple]] = {}
    for case, model, sec, mem, mfu in rows:
        by_case.setdefault(case.name, {})[model] = (sec, mem)
        mfu_s = f"{100 * mfu:6.1f}%" if mfu is not None else "     -"
        print(f"{case.name:<9} {model:<7} {case.batch / sec:9.2f} {1000 * sec:9.1f} {mem:14.1f} {mfu_s:>7}")
    print("\nratios to MONAI (throughput: higher is better; memory: lower is better)")
    for case, r in by_case.items():
        for model, (s_o, m_o) in r.items():
            if model != "monai" and "monai" in r:
                s_m, m_m = r["monai"]
                print(f"  {case:<9} {model:<7} throughput x{s_m / s_o:5.2f}   memory x{m_o / max(m_m, 1e-9):5.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=4, help="alternating rounds per model")
    ap.add_argument("--steps", type=int, default=2, help="timed steps per round (after 1 warm-up)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadier on a shared machine)")
    ap.add_argument("--configs", default=",".join(CPU_CASES), help=f"comma list of {', '.join(CPU_CASES)}")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cases = [CPU_CASES[n] for n in args.configs.split(",")]
    print(f"CPU, {args.threads} thread(s), fp32 (both models), masking ratio {RATIO}; time = fastest of "
          f"{args.rounds}x{args.steps} steps (forward + backward + AdamW), alternating ours/MONAI")
    rows = []
    for case in cases:
        print(case.describe(), flush=True)
        rows += cpu_measure(case, args.rounds, args.steps)
    print_table(rows, "saved act. MiB")
    print("\n(saved act. = tensors autograd keeps for backward, parameters excluded; model FLOPs per step, "
          "ours, analytic: " + ", ".join(f"{c.name} {flops_per_step(c) / 1e9:.1f} GFLOP" for c in cases) + ")")


if __name__ == "__main__":
    main()
