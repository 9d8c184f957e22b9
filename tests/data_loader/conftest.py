import pytest
from loader_helpers import make_cache

SHAPES = [(40, 36, 30)] * 5 + [(20, 50, 16)]  # the last case is smaller than a 24^3 crop in x and z


@pytest.fixture(scope="session")
def coded_cache(tmp_path_factory):
    """6 coded cases (see loader_helpers.coded_case); case_002 has no anatomy map."""
    return make_cache(tmp_path_factory.mktemp("cache"), SHAPES, without_anatomy=(2,))
