"""Every command of the README's pipeline block (and of docs/quickstart.md) runs as written,
in order, on the data shipped in tests/data, with tiny step counts appended.

The commands are read from the documents, not copied here: a command added to either page
runs here too, or must be named in SKIPPED with the test that covers it.
"""

from __future__ import annotations

import csv
import os
import re
import shlex
from pathlib import Path

import pytest

from medmae.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
DOCS = (ROOT / "README.md", ROOT / "docs" / "quickstart.md")

SKIPPED = {  # command prefix -> why it does not run here (and what covers it)
    "medmae study run studies/demo.yaml": "the 14-minute demo study (tests/studies/test_study.py runs a tiny one)",
    "medmae study show demo": "needs the demo study's runs (tests/studies/test_study.py)",
    "medmae demo ": "the demo study (tests/demo/test_demo.py: it runs studies/demo.yaml)",
    "medmae study run studies/brain_lesions_cpu.yaml": "the 45-minute study on ../shared's brains "
    "(tests/benchmarks/test_brain_dev_set.py builds its data and plans it)",
}
TINY_TRAIN = ["train.checkpoint_every=2", "train.figure_every=2", "train.log_every=1",
              "tracking.system_metrics=false", "tracking.log_model=false"]
TINY = [  # (command prefix, arguments appended): later keys win over the documents' own
    ("medmae synth ", ["--shape", "32", "32", "32"]),
    ("medmae preprocess manifest.csv --out cache", ["spacing=[6,6,6]", "priors.supervoxels=16"]),
    ("medmae preprocess healthy/", ["spacing=[4,4,4]"]),
    ("medmae pretrain --config configs/pretrain_demo_cpu.yaml", ["train.steps=2", *TINY_TRAIN]),
    ("medmae pretrain --config configs/anomaly_pretrain_cpu.yaml",
     ["train.steps=2", "data.crop_size=[32,32,32]", *TINY_TRAIN]),
    ("medmae finetune ", ["train.steps=2", "train.decoder_only_steps=1", "train.warmup_steps=1", "train.val_every=2",
                          "tracking.system_metrics=false"]),
    ("medmae segment evaluate", ["label_counts=[1]", "seeds=[0]", "corruptions={noise: [0.1]}",
                                 "finetune=[data.cache_dir=cache, init.source=encoder/, train.steps=2, "
                                 "train.decoder_only_steps=1, train.warmup_steps=1, train.val_every=2]"]),
    ("medmae anomaly evaluate", ["--no-mlflow"]),
]


def documented_commands() -> list[str]:
    """The `medmae ...` lines of the bash blocks of README.md, then of docs/quickstart.md
    (a line already run is not run again), comments cut."""
    out = []
    for doc in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(encoding="utf-8"), flags=re.S):
            for line in block.splitlines():
                line = line.strip()
                if line.startswith("medmae "):
                    line = re.sub(r"\s+#.*$", "", line)
                    if line not in out:
                        out.append(line)
    return out


def argv_of(line: str) -> list[str]:
    args = shlex.split(os.path.expandvars(line))[1:]
    for prefix, extra in TINY:
        if line.startswith(prefix):
            args += extra
    return args


def test_documented_commands_are_the_pipeline():
    """The documents hold the whole pipeline, and every skipped command is still there."""
    lines = documented_commands()
    for needed in ("medmae data scan tests/data", "medmae pretrain --config configs/pretrain_demo_cpu.yaml "
                   "data.cache_dir=cache masking.strategy=anatomy", "medmae finetune --config "
                   "configs/finetune_organs_cpu.yaml data.cache_dir=cache init.source=encoder/"):
        assert any(line.startswith(needed) for line in lines), needed
    for prefix in SKIPPED:
        assert any(line.startswith(prefix) for line in lines), f"{prefix!r} is no longer documented"
    assert not [line for line in lines if re.search(r"(^| )/", line)], "a documented command needs data that is not shipped"


@pytest.mark.slow
def test_readme_commands_run_in_order_on_the_shipped_data(tmp_path, monkeypatch, capsys):
    for name in ("configs", "studies", "docs"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "data").symlink_to(ROOT / "tests" / "data")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")  # the one task of a one-task array
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "1")
    ran = []
    for line in documented_commands():
        if any(line.startswith(prefix) for prefix in SKIPPED):
            continue
        argv = argv_of(line)
        try:
            rc = main(argv)
        except SystemExit as e:  # --help
            rc = e.code
        out = capsys.readouterr()
        assert rc == 0, f"`{line}` failed ({rc}):\n{out.out[-2000:]}\n{out.err[-2000:]}"
        ran.append(line)
    assert len(ran) >= 20
    with open(tmp_path / "manifest.csv", newline="") as f:
        rows = {r["case_id"]: r for r in csv.DictReader(f)}
    assert rows["ct_abdomen_3mm"]["anatomy"].endswith("ct_abdomen_3mm_seg.nii.gz")  # organs: anatomy, not label
    assert rows["ct_abdomen_3mm"]["label"] == "" and rows["spine_t2"]["label"].endswith("_cordseg.nii.gz")
    assert (tmp_path / "runs" / "finetune_cpu" / "model").is_dir()
    assert sorted(p.name for p in (tmp_path / "seg").glob("*_seg.nii.gz")) == [
        "ct_abdomen_3mm_seg.nii.gz", "ct_abdomen_j2k_series_s0_seg.nii.gz"]
    assert (tmp_path / "eval" / "report.html").is_file() and (tmp_path / "scores" / "report.html").is_file()
