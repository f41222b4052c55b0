"""The tutorial notebooks and the pages they are made from, wherever xtuner_nb is installed.

A wheel carries them in `xtuner_nb/_tutorials/` (setup.py copies them in at build time); a repository checkout
(`make setup`, an editable install) has them at its root. Either way the layout is the repository's:
`notebooks/<lang>/NN_<page>.ipynb` and `docs/<lang>/<page>.md`, so the links between notebooks and pages
(`../../docs/en/install.md`) work in a copy too.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

LANGS = ("en", "zh_cn")
_PACKAGED = Path(__file__).resolve().parent / "_tutorials"
_CHECKOUT = Path(__file__).resolve().parents[1]


def tutorials_root() -> Path:
    """The folder holding `notebooks/<lang>/` and `docs/<lang>/`: the wheel's copy, else the repository checkout."""
    for root in (_PACKAGED, _CHECKOUT):
        if (root / "notebooks" / "en").is_dir() and (root / "docs" / "en").is_dir():
            return root
    raise FileNotFoundError(f"no tutorials found in {_PACKAGED} nor in {_CHECKOUT}: this xtuner_nb was installed "
                            "from a build without them; reinstall it from a wheel or use a repository checkout")


@dataclass
class CopiedTutorials:
    dest: Path
    lang: str
    notebooks: list[Path] = field(default_factory=list)  # every notebook now in dest (written or already equal)
    pages: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)  # files that differ from the shipped ones and were not replaced


def copy_tutorials(dest: str | Path, lang: str = "en", overwrite: bool = False) -> CopiedTutorials:
    """Copy the `lang` notebooks and their pages into `dest` (as `notebooks/<lang>/`, `docs/<lang>/`).

    A file already there with other content (a notebook you edited) is kept unless `overwrite=True`.
    """
    if lang not in LANGS:
        raise ValueError(f"lang={lang!r}: choose one of {LANGS}")
    root, dest = tutorials_root(), Path(dest).expanduser().resolve()
    copied = CopiedTutorials(dest=dest, lang=lang)
    for folder, pattern, found in (("notebooks", "*.ipynb", copied.notebooks), ("docs", "*.md", copied.pages)):
        for src in sorted((root / folder / lang).glob(pattern)):
            target = dest / folder / lang / src.name
            if target.exists() and target.read_bytes() != src.read_bytes() and not overwrite:
                copied.kept.append(target)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
            found.append(target)
    return copied
