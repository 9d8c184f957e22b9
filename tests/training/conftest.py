"""Engine tests: tiny models, one intra-op thread (see ``training_helpers.one_thread``)."""

from training_helpers import one_thread  # noqa: F401  (autouse fixture)
