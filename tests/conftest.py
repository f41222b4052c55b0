"""Shared fixtures: a tiny real Qwen3 checkpoint + tokenizer written locally (nothing comes from a hub)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config):
    # Tiny models on 2 cores: one intra-op thread is 5-10x faster than two fighting over cache lines.
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    from xtuner_nb.model import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "qwen3-tiny", seed=0)
