"""--shard I/N + --merge fill one cache exactly as a single run does."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medmae.cli.main import main
from medmae.config.base import save_config
from medmae.io.manifest import Case
from medmae.preprocess.shard import parse_shard, shard_cases, shard_of

from pp_helpers import CT, MR, SPINE, ct_case, mr_case, small_config, truncated_copy


def test_shares_are_a_partition_independent_of_manifest_order():
    cases = [Case(f"case{i:03d}", ["x.nii.gz"], "MR") for i in range(60)]
    shares = [shard_cases(cases, i, 3) for i in (1, 2, 3)]
    ids = [c.case_id for share in shares for c in share]
    assert sorted(ids) == sorted(c.case_id for c in cases) and len(set(ids)) == 60
    assert all(8 <= len(s) <= 32 for s in shares)  # crc32 spreads ids roughly evenly
    assert shard_cases(cases[::-1], 2, 3) == shares[1][::-1]
    assert shard_of("case007", 3) == shard_of("case007", 3)


@pytest.mark.parametrize("text", ["0/3", "4/3", "3", "a/b", "1/0"])
def test_bad_shard_spec_is_an_error(text):
    with pytest.raises(ValueError, match="--shard"):
        parse_shard(text)


def _cache_files(cache):
    return {p.relative_to(cache).as_posix(): p for p in sorted((cache / "cases").rglob("*")) if p.is_file()}


def test_three_shards_and_merge_equal_one_run(tmp_path, manifest_factory, capsys):
    bad = truncated_copy(CT, tmp_path / "broken.nii.gz")
    cases = [ct_case(split="train"), mr_case(split="val"), Case("spine", [str(SPINE)], "MR", sequence="T2"),
             Case("broken", [str(bad)], "CT"), Case("mr2", [str(MR)], "MR", split="train")]
    manifest = manifest_factory(cases)
    cfg_file = tmp_path / "pp.yaml"
    save_config(small_config(), cfg_file)
    one, sharded = tmp_path / "one", tmp_path / "sharded"

    assert main(["preprocess", str(manifest), "--out", str(one), "--config", str(cfg_file), "--no-progress"]) == 0
    for i in (1, 2, 3):
        main(["preprocess", str(manifest), "--out", str(sharded), "--config", str(cfg_file),
              "--no-progress", "--shard", f"{i}/3"])
        assert not (sharded / "index.csv").exists()  # shards write no cache-wide files
    assert len(list((sharded / "shards").glob("*-of-3.json"))) == 3
    assert main(["preprocess", str(manifest), "--out", str(sharded), "--config", str(cfg_file), "--merge"]) == 0
    out = capsys.readouterr().out
    assert "merged 4 cached case(s), bad 1" in out and "broken" in out

    for name in ("index.csv", "report.csv", "config.yaml"):
        assert (sharded / name).read_text() == (one / name).read_text(), name
    fp_one, fp_sharded = (json.loads((c / "fingerprint.json").read_text()) for c in (one, sharded))
    assert fp_sharded == fp_one
    files_one, files_sharded = _cache_files(one), _cache_files(sharded)
    assert files_one.keys() == files_sharded.keys() and len(files_one) >= 4 * 3
    for rel, path in files_one.items():
        if rel.endswith(".npy"):
            assert np.array_equal(np.load(path), np.load(files_sharded[rel])), rel
        elif rel.endswith("meta.json"):
            assert json.loads(path.read_text()) == json.loads(files_sharded[rel].read_text()), rel


def test_merge_names_cases_no_shard_cached(tmp_path, manifest_factory, capsys):
    manifest = manifest_factory([ct_case(), mr_case()])
    cfg_file = tmp_path / "pp.yaml"
    save_config(small_config(), cfg_file)
    cache = tmp_path / "cache"
    todo = [i for i in (1, 2) if shard_of("ct", 2) == i]
    main(["preprocess", str(manifest), "--out", str(cache), "--config", str(cfg_file), "--no-progress",
          "--shard", f"{todo[0]}/2"])
    assert main(["preprocess", str(manifest), "--out", str(cache), "--config", str(cfg_file), "--merge"]) == 0
    out = capsys.readouterr().out
    assert "bad mr" in out and "not cached by any shard" in out
    assert [line.split(",")[0] for line in (cache / "index.csv").read_text().splitlines()[1:]] == ["ct"]
