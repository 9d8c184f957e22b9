"""A study as MLflow shows it: every run nested under the study's run, named for its variant,
with the source tags, the study's tracking overrides honoured, the summary on the parent."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medmae.studies.runner import run_study

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The tiny study with one variant (its encoder logged as a model), run, then run again."""
    text = (HERE / "tiny_study.yaml").read_text().split("\nanomaly:")[0]  # no anomaly step: faster
    text = text.replace("    - {name: random, overrides: [masking.strategy=random]}\n", "")
    text = text.replace("tracking.log_model=false", "tracking.log_model=true")
    seg = (HERE / "tiny_study.yaml").read_text().split("\nsegmentation:")[1]
    tmp = tmp_path_factory.mktemp("mlflow_study")
    path = tmp / "tiny.yaml"
    path.write_text(text + "\nsegmentation:" + seg)
    store = f"sqlite:///{tmp / 'mlflow.db'}"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        first = run_study(path, tmp / "out", store)
        again = run_study(path, tmp / "out", store)
    finally:
        torch.set_num_threads(before)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    exp = client.get_experiment_by_name("medmae-study-tiny")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    return first, again, client, exp, runs


def _tree(runs, root: str) -> dict[str, list]:
    """run name -> runs, of every run below ``root`` (any depth)."""
    by_parent: dict[str | None, list] = {}
    for r in runs:
        by_parent.setdefault(r.data.tags.get("mlflow.parentRunId"), []).append(r)
    out: dict[str, list] = {}
    todo = [root]
    while todo:
        for r in by_parent.get(todo.pop(), []):
            out.setdefault(r.info.run_name, []).append(r)
            todo.append(r.info.run_id)
    return out


def test_every_run_is_nested_under_its_study_and_named_for_its_variant(study):
    first, again, client, exp, runs = study
    top = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert sorted(r.info.run_id for r in top) == sorted([first.run_id, again.run_id])  # no stray run
    tree = _tree(runs, first.run_id)
    assert all(len(v) == 1 for v in tree.values()), sorted(tree)  # no step twice under one name
    (pretrain,) = [n for n in tree if n.startswith("pretrain-")]
    # pretraining's run (named with its start time), the evaluation, and its two fine-tuning arms
    # named for the variant; no empty data / preprocess / export runs
    assert pretrain.startswith("pretrain-anatomy-s0-2"), pretrain
    assert sorted(set(tree) - {pretrain}) == ["finetune-anatomy-s0-pretrained-n1-s0",
                                              "finetune-anatomy-s0-scratch-n1-s0", "segmentation-anatomy-s0"]
    seg = tree["segmentation-anatomy-s0"][0]
    for arm in ("pretrained", "scratch"):  # the fine-tunes sit under the evaluation that made them
        assert tree[f"finetune-anatomy-s0-{arm}-n1-s0"][0].data.tags["mlflow.parentRunId"] == seg.info.run_id
    pre = tree[pretrain][0]
    for run in (pre, seg, tree["finetune-anatomy-s0-scratch-n1-s0"][0]):  # heads say what code made them
        tags = run.data.tags
        assert tags["version.torch"] == torch.__version__ and tags["mlflow.source.name"]
        assert ("mlflow.source.git.commit" in tags) == ("mlflow.source.git.commit" in pre.data.tags)
        assert tags["medmae.step"] in ("pretrain-anatomy-s0", "segmentation-anatomy-s0")
    # the study's tracking.system_metrics=false holds for its runs (merged, not replaced)
    assert not any(k.startswith("system/") for r in runs for k in r.data.metrics)
    # the encoder is named for its variant and step
    (model,) = client.search_logged_models([exp.experiment_id])
    assert model.name == "pretrain-anatomy-s0-encoder-step6" and model.source_run_id == pre.info.run_id
    assert not [k for k in pre.data.params if k.startswith("tracking.tags")]  # tags, not params
    assert pre.data.metrics["study.final_loss"] == pytest.approx(first.rows[0]["pretrain.final_loss"])


def test_the_study_run_carries_the_summary(study):
    first, again, client, exp, runs = study
    parent = client.get_run(first.run_id).data.metrics
    row = first.rows[0]
    for key in ("pretrain.final_loss", "pretrain.loss_over_mean_predictor", "segmentation.dice"):
        assert parent[f"anatomy/{key}"] == pytest.approx(row[key])
    assert parent["anatomy/seeds"] == 1 and parent["data-cases.cases"] == 3
    assert parent["preprocess-cache.cases_cached"] == 3 and parent["steps_run"] == 5


def test_a_rerun_nests_one_reused_run_per_step_that_has_runs(study):
    first, again, client, exp, runs = study
    assert again.ran == [] and len(again.reused) == 5
    tree = _tree(runs, again.run_id)
    assert sorted(tree) == ["pretrain-anatomy-s0 (reused)", "segmentation-anatomy-s0 (reused)"]
    old = _tree(runs, first.run_id)
    reused = tree["segmentation-anatomy-s0 (reused)"][0]
    assert reused.data.tags["medmae.engine_run_id"] == old["segmentation-anatomy-s0"][0].info.run_id
    assert reused.data.metrics["dice"] == pytest.approx(first.rows[0]["segmentation.dice"])
    assert client.get_run(again.run_id).data.metrics["anatomy/segmentation.dice"] == pytest.approx(
        first.rows[0]["segmentation.dice"])


def test_study_show_finds_the_store_from_any_folder(study, tmp_path, monkeypatch, capsys):
    """`study show` takes the store from the study's output folder (mlflow_run.json) or from
    the study file's tracking_uri (relative sqlite paths from the file's folder), not from
    the working directory."""
    from medmae.cli.main import main
    from medmae.studies.tracking import locate_study

    first, again, client, exp, runs = study
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no ./mlruns here
    assert main(["study", "show", "tiny"]) == 1
    assert "no finished run of study 'tiny'" in capsys.readouterr().err
    assert main(["study", "show", str(first.out)]) == 0
    shown = capsys.readouterr()
    assert "# Study `tiny`" in shown.out and "Downloading artifacts" not in shown.err  # no progress bar for one file
    store = client.tracking_uri
    spec_text = (HERE / "tiny_study.yaml").read_text()
    with_store = tmp_path / "files" / "tiny.yaml"
    with_store.parent.mkdir()
    with_store.write_text(f"tracking_uri: {store}\n" + spec_text)
    assert main(["study", "show", str(with_store)]) == 0
    assert "| anatomy | anatomy | 1 |" in capsys.readouterr().out
    with_store.write_text("tracking_uri: sqlite:///db/mlflow.db\n" + spec_text)
    assert locate_study(str(with_store), None) == ("tiny", f"sqlite:///{with_store.parent.resolve()}/db/mlflow.db")
    assert locate_study(str(with_store), "sqlite:////x.db") == ("tiny", "sqlite:////x.db")  # the option wins
    with pytest.raises(Exception, match="not a study's output folder"):
        locate_study(str(elsewhere), None)
