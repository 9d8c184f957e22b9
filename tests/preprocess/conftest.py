"""Fixtures for the preprocessing tests (helpers live in pp_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medmae.io.manifest import Case, write_manifest
from medmae.preprocess.case import preprocess_case

from pp_helpers import ct_case, mr_case, small_config


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    """CT and MR abdomen preprocessed once per test module at 3 mm: {"ct": meta, "mr": meta}."""
    from medmae.preprocess.cache import open_case

    cache = tmp_path_factory.mktemp("cache")
    cfg = small_config()
    out = {}
    for case in (ct_case(), mr_case()):
        preprocess_case(case, cfg, cache)
        out[case.case_id] = open_case(cache / "cases" / case.case_id)
    return out


@pytest.fixture
def manifest_factory(tmp_path):
    """Write a manifest of the given cases next to the data it names; returns its path."""
    def make(cases: list[Case], name: str = "manifest.csv") -> Path:
        path = tmp_path / name
        write_manifest(cases, path)
        return path
    return make
