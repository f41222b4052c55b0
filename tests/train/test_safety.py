"""Safe by default: a tokenizer folder's own Python code does not run, and a checkpoint that would run code when
unpickled is refused."""

from __future__ import annotations

import json
import logging
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from tests.train.helpers import small_config

EVIL_CODE = """
from pathlib import Path
Path({marker!r}).write_text("the tokenizer folder's code ran")
from transformers import PreTrainedTokenizerFast


class EvilTokenizer(PreTrainedTokenizerFast):
    pass
"""


def _evil_tokenizer_folder(tiny_ckpt: Path, folder: Path, marker: Path) -> Path:
    shutil.copytree(tiny_ckpt, folder)
    (folder / "evil_tokenizer.py").write_text(EVIL_CODE.format(marker=str(marker)))
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config.update(tokenizer_class="EvilTokenizer", auto_map={"AutoTokenizer": [None, "evil_tokenizer.EvilTokenizer"]})
    config_file.write_text(json.dumps(config))
    return folder


def test_tokenizer_code_runs_only_with_trust_remote_code(tiny_ckpt, tmp_path):
    from xtuner_nb.train.build import build_tokenizer

    marker = tmp_path / "marker.txt"
    folder = _evil_tokenizer_folder(tiny_ckpt, tmp_path / "evil_tok", marker)
    cfg = small_config(tiny_ckpt, tmp_path, tokenizer_path=folder)
    assert cfg.trust_remote_code is False  # the default
    with pytest.raises(ValueError, match=r"trust_remote_code=True .*--trust-remote-code"):
        build_tokenizer(cfg, logging.getLogger("test"))
    assert not marker.exists()
    # the folder's code is real: opting in runs it (so the check above can fail)
    tok = build_tokenizer(cfg.model_copy(update={"trust_remote_code": True}), logging.getLogger("test"))
    assert type(tok).__name__ == "EvilTokenizer" and marker.exists()


class _Payload:
    """Unpickling this writes a file: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def _checkpoint(path: Path) -> tuple[Path, dict]:
    from xtuner_nb.train.checkpoint import folder as ckpt

    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 1.0)
    model(torch.ones(1, 4)).sum().backward()
    optimizer.step()
    ckpt.save_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler, loader_state={"step": 1},
                         train_state={"cur_step": 1}, config_json=None, rank=0)
    return path, dict(model=model, optimizer=optimizer, scheduler=scheduler, rank=0)


def test_checkpoint_files_load_with_weights_only_and_a_malicious_pickle_is_refused(tmp_path):
    import numpy as np

    from xtuner_nb.train.checkpoint import folder as ckpt

    np.random.seed(3)
    path, parts = _checkpoint(tmp_path / "ckpt-step-1")
    expected = np.random.rand()
    np.random.seed(4)
    assert ckpt.load_checkpoint(path, **parts)["loader_state"] == {"step": 1}
    assert np.random.rand() == expected  # the RNG states round-trip without pickled numpy objects
    for name in ("dataloader.pt", "lr_scheduler.pt", "rng_rank0.pt"):
        torch.load(path / name, weights_only=True)  # every .pt file is tensors and plain containers

    marker = tmp_path / "marker.txt"
    for victim in ("dataloader.pt", "lr_scheduler.pt", "rng_rank0.pt", "weights/.metadata"):
        bad = tmp_path / f"bad-{victim.replace('/', '-')}"
        shutil.copytree(path, bad)
        (bad / victim).write_bytes(pickle.dumps(_Payload(marker)))
        with pytest.raises(ckpt.UnsafeCheckpointError, match=rf"{victim}: refused to load"):
            ckpt.load_checkpoint(bad, **parts)
        assert not marker.exists(), victim
    pickle.loads(pickle.dumps(_Payload(marker)))  # the payload is real: unpickled without restriction, it runs
    assert marker.exists()


def test_checkpoint_metadata_reads_across_pythons_and_torch_versions(tmp_path, monkeypatch):
    """A checkpoint written on Python 3.13 pickles its Path as `pathlib._local.PosixPath` (up to 3.12: `pathlib`);
    torch before 2.9 has no `FileSystemReader._get_metadata_path`. Both still resume."""
    from torch.distributed.checkpoint import FileSystemReader

    from xtuner_nb.train.checkpoint import folder as ckpt

    path, parts = _checkpoint(tmp_path / "ckpt-step-1")
    metadata = ckpt.SafeFileSystemReader(path / "weights").read_metadata()
    metadata.storage_meta.checkpoint_id = Path(path / "weights")  # DCP keeps the id it was given: a Path here
    written = pickle.dumps(metadata, protocol=2)  # protocol 2 names each global as text: "c<module>\n<name>\n"
    native = f"c{type(path).__module__}\n{type(path).__name__}\n".encode()  # this Python's spelling
    assert written.count(native) == 1
    monkeypatch.delattr(FileSystemReader, "_get_metadata_path", raising=False)
    for module in ("pathlib", "pathlib._local"):  # written by Python <= 3.12, by 3.13: each reads on this Python
        spelled = f"c{module}\n{type(path).__name__}\n".encode()
        (path / "weights/.metadata").write_bytes(written.replace(native, spelled))
        assert ckpt.load_checkpoint(path, **parts)["loader_state"] == {"step": 1}, module
        checkpoint_id = ckpt.SafeFileSystemReader(path / "weights").read_metadata().storage_meta.checkpoint_id
        assert checkpoint_id == path / "weights", module
