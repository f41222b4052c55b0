"""The notebooks are the pages: same python code, same order, both languages identical, regenerated when pages change.

The page parser here is written independently of tools/build_notebooks.py (plain fence matching), so a converter
bug that drops or reorders a block cannot hide behind itself.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import xtuner_nb

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import build_notebooks  # noqa: E402

LANGS = build_notebooks.LANGS
PAGES = build_notebooks.PAGES


def page_python_blocks(path: Path) -> list[str]:
    """Every ```python / ```{code-block} python block of a MyST page, options stripped, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = re.match(r"^(`{3,})\s*(\{code-block\}\s+)?(python|py|python3)\s*$", lines[i])
        if not m:
            i += 1
            continue
        fence, body, i = m.group(1), [], i + 1
        while not re.match(rf"^{fence}`*\s*$", lines[i]):
            body.append(lines[i])
            i += 1
        if m.group(2):  # directive: leading `:option:` lines and the blank line after them
            while body and re.match(r"^:[\w-]+:", body[0]):
                body.pop(0)
            if body and not body[0].strip():
                body.pop(0)
        blocks.append("\n".join(body).strip("\n"))
        i += 1
    return blocks


def code_cells(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "code"]


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("page", list(PAGES))
def test_notebook_code_cells_are_the_page_python_blocks(lang, page):
    md = ROOT / "docs" / lang / f"{page}.md"
    nb = ROOT / "notebooks" / lang / f"{PAGES[page]}.ipynb"
    blocks = page_python_blocks(md)
    assert blocks, f"{md} has no python block"
    check, *cells = code_cells(nb)  # the first cell is the generated setup check, not on the page
    assert check == build_notebooks.setup_check_source(xtuner_nb.__version__)
    assert cells == blocks, f"{nb.relative_to(ROOT)} does not hold the python blocks of {md.relative_to(ROOT)}"


def _run_setup_check(tmp_path, fake_version: str | None) -> subprocess.CompletedProcess:
    """The setup cell in a Python that has no xtuner_nb (-I -S: no site-packages, no PYTHONPATH), or a fake one."""
    if fake_version is not None:
        (tmp_path / "xtuner_nb").mkdir()
        (tmp_path / "xtuner_nb" / "__init__.py").write_text(f"__version__ = {fake_version!r}\n")
    source = build_notebooks.setup_check_source(xtuner_nb.__version__)
    return subprocess.run([sys.executable, "-I", "-S", "-c", f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
                           + source], capture_output=True, text=True, cwd=tmp_path, timeout=60)


@pytest.mark.parametrize("fake_version", [None, "0.0.1"])
def test_setup_check_prints_the_pip_line_and_stops(tmp_path, fake_version):
    out = _run_setup_check(tmp_path, fake_version)
    assert out.returncode == 1 and "xtuner_nb is missing or of another version" in out.stderr
    v = xtuner_nb.__version__
    assert f"needs xtuner_nb {v}; this kernel has {fake_version or 'none'}." in out.stdout
    assert out.stdout.splitlines()[-1] == f'%pip install "xtuner_nb[kernel]=={v}"'


def test_setup_check_passes_with_the_matching_version(tmp_path):
    out = _run_setup_check(tmp_path, xtuner_nb.__version__)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"xtuner_nb {xtuner_nb.__version__} from {tmp_path}")


@pytest.mark.parametrize("page", list(PAGES))
def test_zh_cn_and_en_notebooks_have_identical_code(page):
    en, zh = (code_cells(ROOT / "notebooks" / lang / f"{PAGES[page]}.ipynb") for lang in ("en", "zh_cn"))
    assert len(en) == len(zh), f"{page}: en has {len(en)} code cells, zh_cn {len(zh)}"
    for k, (a, b) in enumerate(zip(en, zh), 1):
        assert a == b, f"{page}: code cell {k} differs between en and zh_cn"


def test_committed_notebooks_are_up_to_date():
    stale = [str(nb.relative_to(ROOT)) for md, nb in build_notebooks.targets()
             if not nb.exists() or nb.read_text(encoding="utf-8") != build_notebooks.notebook_text(md)]
    assert not stale, f"regenerate with `.venv/bin/python tools/build_notebooks.py`: {stale}"


def test_every_page_has_a_notebook_and_no_stray_notebooks():
    no_notebook = {"index", "install", "benchmarks", "xtuner_compat"}  # reference pages
    assert set(build_notebooks.REFERENCE_PAGES) == no_notebook
    assert not build_notebooks.unlisted_pages()
    for lang in LANGS:
        assert no_notebook <= {p.stem for p in (ROOT / "docs" / lang).glob("*.md")}, f"docs/{lang}: a page is missing"
        pages = {p.stem for p in (ROOT / "docs" / lang).glob("*.md")} - no_notebook
        assert pages == set(PAGES), f"docs/{lang}: pages without a notebook entry in tools/build_notebooks.py"
        nbs = {p.name for p in (ROOT / "notebooks" / lang).glob("*.ipynb")}
        assert nbs == {f"{n}.ipynb" for n in PAGES.values()}, f"notebooks/{lang}: unexpected notebooks {nbs}"


@pytest.mark.parametrize("nb_path", sorted((ROOT / "notebooks").glob("*/*.ipynb")), ids=lambda p: p.name)
def test_notebooks_are_stored_clean_with_a_kernelspec(nb_path):
    raw = json.loads(nb_path.read_text(encoding="utf-8"))
    assert raw["metadata"]["kernelspec"]["name"] == "python3"  # else JupyterLab asks "Select Kernel"
    for cell in raw["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, f"{nb_path.name}: stored with outputs"
    assert "widgets" not in raw["metadata"], f"{nb_path.name}: stored with widget state"


def test_converter_rules():
    page = "\n".join([
        "# Title", "(a-label)=", "% a comment", "Intro with [next](trainer.md) and [bench](benchmarks.md).", "",
        "```{code-block} python", ":caption: first", "", "x = 1", "```", "",
        "```{tip}", ":class: margin", "", "Set `cache_dir`.", "```", "",
        "```bash", "make demo", "```", "",
        "```python", "print(x)", "```",
    ])
    segs = build_notebooks.split_page(page, "t.md", "en")
    assert [k for k, _ in segs] == ["markdown", "code", "markdown", "code"]
    assert segs[1][1] == "x = 1" and segs[3][1] == "print(x)"
    assert "(02_trainer.ipynb)" in segs[0][1] and "(../../docs/en/benchmarks.md)" in segs[0][1]
    assert "a-label" not in segs[0][1] and "a comment" not in segs[0][1]
    assert "> **Tip**" in segs[2][1] and "Set `cache_dir`." in segs[2][1] and ":class:" not in segs[2][1]
    assert "```bash\nmake demo\n```" in segs[2][1]
    with pytest.raises(build_notebooks.PageError, match="t.md:2: a python block inside"):
        build_notebooks.split_page("````{note}\n```python\nx\n```\n````", "t.md")


def test_build_tool_check_mode_passes():
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "build_notebooks.py"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_a_page_the_generator_does_not_know_is_reported(tmp_path):
    for lang in LANGS:
        (tmp_path / "docs" / lang).mkdir(parents=True)
        for stem in [*PAGES, *build_notebooks.REFERENCE_PAGES]:
            (tmp_path / "docs" / lang / f"{stem}.md").write_text("# page\n")
    assert build_notebooks.unlisted_pages(tmp_path) == []
    (tmp_path / "docs" / "zh_cn" / "new_topic.md").write_text("# new\n")
    assert build_notebooks.unlisted_pages(tmp_path) == [tmp_path / "docs" / "zh_cn" / "new_topic.md"]
