"""Fixtures of the model tests."""

import pytest


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    from xtuner_nb.model import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny-qwen3")
