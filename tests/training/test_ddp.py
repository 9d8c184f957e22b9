"""Two CPU ranks (gloo) through the real engine, with gradient accumulation: same parameters,
only rank 0 writes, and the applied gradient is the single-process gradient of all the data."""

import math
import os
import socket
import time

import pytest
import torch
import torch.multiprocessing as mp

from medmae.training.checkpoint import load_checkpoint
from grad_helpers import fixed_data, step_grads
from training_helpers import make_phantom_cache, tiny_config

WORLD = 2
STEPS = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BATCH, ACCUM = 2, 2


def _rank_main(rank: int, port: int, root: str, cache: str) -> None:
    """One rank: torchrun's environment, its own working directory; first one engine step on
    fixed data and masks (its gradient saved), then a whole run of the engine (which joins the
    process group already there)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    cwd = os.path.join(root, f"cwd{rank}")
    os.makedirs(cwd, exist_ok=True)
    os.chdir(cwd)  # relative out_dir and the default ./mlruns land in this rank's own folder
    torch.set_num_threads(1)
    from medmae.training.distributed import init_distributed, shutdown
    from medmae.training.engine import pretrain

    info = init_distributed("cpu")
    try:
        _grad_step(rank, root, info)
        _engine_run(rank, root, cache, pretrain)
    finally:
        shutdown(info)


def _grad_step(rank: int, root: str, info) -> None:
    """This rank's BATCH x ACCUM samples of the fixed data, one engine step under DDP."""
    images, masks = fixed_data(WORLD * BATCH * ACCUM)
    mine = slice(rank * BATCH * ACCUM, (rank + 1) * BATCH * ACCUM)
    grads = step_grads(images[mine], masks[mine], batch=BATCH, accum=ACCUM, info=info)
    torch.save(grads, os.path.join(root, f"grads{rank}.pt"))


def _engine_run(rank: int, root: str, cache: str, pretrain) -> None:
    """A whole engine run with gradient accumulation and a mixture of adversarial masking (its
    generator learns) and loss-guided masking with a loss predictor (it learns at the exact
    refreshes, steps 0 and 2); parameters, losses and masking state saved."""
    cfg = tiny_config(cache, "run", f"train.steps={STEPS}", "train.warmup_steps=1", "train.checkpoint_every=2",
                      "train.log_every=2", "train.figure_every=4", "train.lr_per_256=0.05",
                      f"data.batch_size={BATCH}", f"train.grad_accum={ACCUM}", "masking.strategy=mixture",
                      "masking.mixture=[{strategy: adversarial, adversarial: {warmup_steps: 0}}, {strategy: loss_guided, "
                      "loss_guided: {score_every: 2, alpha_start: 0.5}}]", "tracking.log_model=false")
    result = pretrain(cfg)
    torch.save({"params": result.model.state_dict(), "losses": result.losses,
                "masking": {k: v for k, v in result.masking.state_dict().items() if isinstance(v, torch.Tensor)}},
               os.path.join(root, f"rank{rank}.pt"))


def _spawn(fn, *args) -> None:
    """Run ``fn(rank, *args)`` on WORLD spawned processes; fail the test after 150 s."""
    procs = mp.start_processes(fn, args=args, nprocs=WORLD, join=False, start_method="spawn")
    deadline = time.monotonic() + 150
    while not procs.join(timeout=1):
        if time.monotonic() > deadline:
            for p in procs.processes:
                p.kill()
            pytest.fail("DDP ranks did not finish within 150 s")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """Both ranks run once for the module; their outputs are in the returned folder."""
    root = tmp_path_factory.mktemp("ddp")
    cache = make_phantom_cache(root / "cache", n=4, shape=(40, 40, 40))
    _spawn(_rank_main, _free_port(), str(root), str(cache))
    return root


def test_two_ranks_stay_identical_and_only_rank0_writes(ranks):
    tmp_path = ranks

    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD))
    assert r0["params"].keys() == r1["params"].keys()
    assert all(torch.equal(r0["params"][k], r1["params"][k]) for k in r0["params"])
    # the adversarial generator and the loss predictor learn (their heads start at zero) ...
    for head in ("strategies.0.net.head.weight", "strategies.1.predictor.net.head.weight"):
        assert r0["masking"][head].abs().sum() > 0, head
    assert all(torch.equal(r0["masking"][k], r1["masking"][k]) for k in r0["masking"])  # ... in step
    assert len(r0["losses"]) == STEPS and all(math.isfinite(x) for x in r0["losses"])
    assert r0["losses"] == r1["losses"]  # the logged loss is the mean over ranks

    # rank 1 wrote nothing: no outputs, no MLflow store in its working directory
    assert list((tmp_path / "cwd1").iterdir()) == []
    run = tmp_path / "cwd0" / "run"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest.pt", "step_0000002.pt",
                                                                        "step_0000004.pt"]
    assert len((run / "metrics.jsonl").read_text().splitlines()) == STEPS
    state = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert state["world_size"] == WORLD and len(state["ranks"]) == WORLD
    g0, g1 = (s["rng"]["generator"] for s in state["ranks"])
    assert not torch.equal(g0, g1)  # each rank draws its own masks

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'cwd0' / 'mlruns' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("medmae-pretrain").experiment_id])
    assert len(runs) == 1 and runs[0].data.tags["world_size"] == "2"
    assert runs[0].data.params["derived.effective_batch"] == "8"


def test_ddp_with_grad_accum_applies_the_gradient_of_all_micro_batches_of_all_ranks(ranks):
    """2 ranks x grad_accum 2 x batch 2 == one process, one batch of 8 (fixed masks). A no_sync
    on the wrong micro-batch, keeping only the last micro-batch's gradient, or skipping the
    last all-reduce fails this."""
    tmp_path = ranks
    images, masks = fixed_data(WORLD * BATCH * ACCUM)
    whole = step_grads(images, masks, batch=WORLD * BATCH * ACCUM, accum=1)
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"grads{rank}.pt", weights_only=True)
        assert len(got) == len(whole) > 10
        for a, b in zip(whole, got):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), f"rank {rank}: max diff {(a - b).abs().max()}"
