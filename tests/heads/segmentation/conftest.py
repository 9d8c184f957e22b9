"""Segmentation-head tests: one intra-op thread (tiny models on a shared 2-core machine)."""

from seg_helpers import one_thread_fixture  # noqa: F401  (autouse fixture)
