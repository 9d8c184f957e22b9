"""One briefly pretrained tiny MAE on brain phantoms, shared by every anomaly test."""

import pytest
import torch

from anomaly_helpers import build


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield build(tmp_path_factory.mktemp("anomaly"))
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
