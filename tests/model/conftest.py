"""Model tests run tiny models: one intra-op thread is several times faster than two on the shared 2-core machine
(OpenMP threads spin-wait against the other jobs), and it does not change what the tests check."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
