"""Fine-tuning on two CPU ranks (gloo) through the real engine: the encoder joins training
mid-run (DDP re-wrapped), both ranks keep identical weights, only rank 0 writes."""

import os
import socket
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from seg_helpers import phantom_cache

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, port: int, root: str, cache: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank))
    sys.path.insert(0, str(Path(__file__).parent))
    torch.set_num_threads(1)
    from medmae.heads.segmentation.engine import finetune
    from seg_helpers import tiny_finetune

    cfg = tiny_finetune(Path(cache), Path(root) / "run", "train.steps=4", "train.decoder_only_steps=2",
                        "train.checkpoint_every=2", "train.log_every=2", "train.val_every=4", "train.device=cpu",
                        "data.crop_size=[16,16,16]", "data.batch_size=2", "tracking.enabled=false")
    result = finetune(cfg)
    torch.save({"params": result.model.state_dict(), "losses": result.losses}, os.path.join(root, f"rank{rank}.pt"))


@pytest.mark.slow
def test_two_ranks_stay_identical_and_only_rank0_writes(tmp_path):
    cache = phantom_cache(tmp_path, n=5, val=1, spacing=(8.0, 8.0, 8.0))
    procs = mp.start_processes(_rank_main, args=(_free_port(), str(tmp_path), str(cache)), nprocs=WORLD,
                               join=False, start_method="spawn")
    deadline = time.monotonic() + 150
    while not procs.join(timeout=1):
        if time.monotonic() > deadline:
            for p in procs.processes:
                p.kill()
            pytest.fail("DDP ranks did not finish within 150 s")
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD))
    assert all(torch.equal(r0["params"][k], r1["params"][k]) for k in r0["params"])
    assert r0["losses"] == r1["losses"] and len(r0["losses"]) == 4
    run = tmp_path / "run"
    assert (run / "model" / "segmenter.pt").is_file() and (run / "checkpoints" / "latest.pt").is_file()
    ck = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    assert ck["world_size"] == 2 and len(ck["ranks"]) == 2 and ck["step"] == 4
