"""`xtuner-nb notebooks DIR`: the tutorials (in the repository layout, so their page links resolve), kept edits."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from xtuner_nb.train.cli import main
from xtuner_nb.tutorials import copy_tutorials, tutorials_root

ROOT = Path(__file__).resolve().parents[2]


def test_tutorials_of_a_checkout_are_the_repository_folders():
    assert tutorials_root() == ROOT  # the wheel's copy (xtuner_nb/_tutorials) is tested in tests/test_wheel.py


@pytest.mark.parametrize("lang", ["en", "zh_cn"])
def test_cli_copies_the_notebooks_and_pages(tmp_path, capsys, lang):
    # in process (the console script itself runs in tests/start/test_wheel.py)
    assert main(["notebooks", str(tmp_path / "t"), "--lang", lang]) == 0
    out = capsys.readouterr().out
    for folder, pattern in (("notebooks", "*.ipynb"), ("docs", "*.md")):
        shipped = sorted(p.name for p in (ROOT / folder / lang).glob(pattern))
        assert sorted(p.name for p in (tmp_path / "t" / folder / lang).glob(pattern)) == shipped
    first = tmp_path / "t" / "notebooks" / lang / "01_quickstart.ipynb"
    assert first.read_bytes() == (ROOT / "notebooks" / lang / "01_quickstart.ipynb").read_bytes()
    assert f"in a kernel running this Python ({sys.executable})" in out
    assert f"Select Kernel -> {sys.executable}" in out


def test_an_edited_notebook_is_kept_unless_forced(tmp_path):
    copy_tutorials(tmp_path)
    edited = tmp_path / "notebooks" / "en" / "02_trainer.ipynb"
    edited.write_text("my notes", encoding="utf-8")
    again = copy_tutorials(tmp_path)
    assert again.kept == [edited] and edited.read_text(encoding="utf-8") == "my notes"
    assert len(again.notebooks) == len(list((ROOT / "notebooks" / "en").glob("*.ipynb"))) - 1
    forced = copy_tutorials(tmp_path, overwrite=True)
    assert forced.kept == [] and edited.read_bytes() == (ROOT / "notebooks" / "en" / "02_trainer.ipynb").read_bytes()


def test_unknown_language_is_refused(tmp_path):
    with pytest.raises(ValueError, match="lang='fr'"):
        copy_tutorials(tmp_path, lang="fr")
