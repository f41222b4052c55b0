"""Build the tutorial notebooks from the documentation pages: `docs/<lang>/<page>.md` -> `notebooks/<lang>/NN_<page>.ipynb`.

The pages are the source; the notebooks are generated, stored without outputs, and checked by tests/docs.

    .venv/bin/python tools/build_notebooks.py           # rewrite notebooks/
    .venv/bin/python tools/build_notebooks.py --check   # exit 1 when a committed notebook is stale

Conversion rules (MyST markdown subset used by the pages):
- ```python and ```{code-block} python fences become code cells (directive options such as `:caption:` dropped);
  everything between two code blocks becomes one markdown cell.
- Other fences (bash, json, text, ...) stay fenced code inside the markdown cell.
- Admonitions (```{tip}, {note}, {warning}, {important}, {admonition} Title) become block quotes.
- Links to sibling pages (`[x](trainer.md)`) point at the sibling notebook; `(label)=` targets and `%` comments go.
- A python block inside an admonition is an error: a code cell cannot live inside a quote.

Every notebook starts with one generated code cell (not on the page, `setup_check_source`): it checks that
xtuner_nb is importable in the kernel, at the version the notebook was built with (`xtuner_nb.__version__`), and
otherwise prints the one `%pip install` line to run. It installs nothing itself.
"""

from __future__ import annotations

import argparse
import posixpath
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
LANGS = ("en", "zh_cn")
# page stem -> notebook stem, in reading order.
PAGES = {
    "quickstart": "01_quickstart",
    "trainer": "02_trainer",
    "dataset": "03_dataset",
    "checkpoints": "04_checkpoints",
    "multi_gpu": "05_multi_gpu",
    "lora": "06_lora",
    "real_model": "07_real_model",
}
# Pages that are read, not run: no notebook. Every other page of docs/<lang>/ must be in PAGES (--check says so).
REFERENCE_PAGES = ("index", "install", "benchmarks", "xtuner_compat")
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>.*)$")
_ADMONITIONS = {"tip": "Tip", "note": "Note", "warning": "Warning", "important": "Important", "hint": "Hint",
                "caution": "Caution", "attention": "Attention", "seealso": "See also"}


class PageError(ValueError):
    """The page uses MyST the converter does not understand; the message names the file and line."""


def _is_python(info: str) -> bool:
    info = info.strip()
    return info in ("python", "py", "python3") or re.fullmatch(r"\{code-block\}\s+(python|py|python3)", info) is not None


def _strip_options(lines: list[str]) -> list[str]:
    """Drop a directive's leading `:option: value` lines (and the blank line after them)."""
    i = 0
    while i < len(lines) and re.match(r"^:[\w-]+:", lines[i]):
        i += 1
    if i and i < len(lines) and not lines[i].strip():
        i += 1
    return lines[i:]


def _find_close(lines: list[str], start: int, fence: str) -> int:
    char, n = fence[0], len(fence)
    for j in range(start, len(lines)):
        m = re.match(r"^ {0,3}(`{3,}|~{3,})\s*$", lines[j])
        if m and m.group(1)[0] == char and len(m.group(1)) >= n:
            return j
    raise IndexError


def split_page(text: str, where: str = "<page>", lang: str = "en") -> list[tuple[str, str]]:
    """The page as a list of ("markdown" | "code", source) segments, in order."""
    lines = text.splitlines()
    segments: list[tuple[str, str]] = []
    md: list[str] = []

    def flush_md():
        body = "\n".join(md).strip("\n")
        if body.strip():
            segments.append(("markdown", body))
        md.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        m = _FENCE.match(line)
        if not m:
            if re.match(r"^\(\S+\)=\s*$", line) or re.match(r"^%( |$)", line):
                i += 1  # MyST target / comment: meaningless in a notebook
                continue
            md.append(_rewrite_links(line, lang))
            i += 1
            continue
        fence, info = m.group("fence"), m.group("info").strip()
        try:
            close = _find_close(lines, i + 1, fence)
        except IndexError:
            raise PageError(f"{where}:{i + 1}: code fence {fence}{info} is never closed") from None
        body = lines[i + 1:close]
        if _is_python(info):
            flush_md()
            code = "\n".join(_strip_options(body) if info.startswith("{") else body).strip("\n")
            if not code.strip():
                raise PageError(f"{where}:{i + 1}: empty python block")
            segments.append(("code", code))
        elif info.startswith("{"):
            md.extend(_directive_to_markdown(info, body, where, i + 1, lang))
        else:
            md.extend([line, *body, lines[close]])
        i = close + 1
    flush_md()
    return segments


def _directive_to_markdown(info: str, body: list[str], where: str, lineno: int, lang: str) -> list[str]:
    m = re.match(r"^\{([\w-]+)\}\s*(.*)$", info)
    if not m:
        raise PageError(f"{where}:{lineno}: cannot read the directive {info!r}")
    name, arg = m.group(1), m.group(2).strip()
    inner = _strip_options(body)
    for k, ln in enumerate(inner):
        fm = _FENCE.match(ln)
        if fm and _is_python(fm.group("info")):
            raise PageError(f"{where}:{lineno + k + 1}: a python block inside {{{name}}} cannot become a notebook "
                            "cell; move it out of the directive")
    if name == "code-block":  # a non-python code block
        return [f"```{arg}", *inner, "```"]
    if name in _ADMONITIONS or name == "admonition":
        title = arg if name == "admonition" else _ADMONITIONS[name]
        nested = split_page("\n".join(inner), where, lang)  # admonitions may hold lists, links, non-python fences
        text = "\n\n".join(src for _, src in nested)
        return ["", f"> **{title}**", ">", *[f"> {t}".rstrip() for t in text.splitlines()], ""]
    raise PageError(f"{where}:{lineno}: the directive {{{name}}} has no notebook equivalent in tools/build_notebooks.py")


def _rewrite_links(line: str, lang: str) -> str:
    """Page links -> notebook links: a sibling page with a notebook opens it, other pages open their source."""

    def repl(m: re.Match) -> str:
        target = m.group(1)
        path, _, anchor = target.partition("#")
        if not path.endswith(".md") or re.match(r"^[a-z]+:", path):
            return m.group(0)
        anchor = f"#{anchor}" if anchor else ""
        if "/" not in path and path[:-3] in PAGES:
            return f"]({PAGES[path[:-3]]}.ipynb{anchor})"
        return f"]({posixpath.normpath(f'../../docs/{lang}/{path}')}{anchor})"

    return re.sub(r"\]\(([^)\s]+)\)", repl, line)


def package_version(root: Path = ROOT) -> str:
    """`xtuner_nb.__version__`, read from the source (the generator does not import the package)."""
    init = root / "xtuner_nb" / "__init__.py"
    m = re.search(r'^__version__ = "([^"]+)"$', init.read_text(encoding="utf-8"), re.M)
    if not m:
        raise PageError(f"{init}: no `__version__ = \"...\"` line")
    return m.group(1)


def setup_check_source(version: str) -> str:
    """The first cell of every notebook. English only: the code cells of en and zh_cn notebooks are identical."""
    return f"""\
# Setup check: is xtuner_nb {version} installed in this kernel? (It installs nothing itself.)
NOTEBOOK_VERSION = "{version}"
try:
    import xtuner_nb
    installed = xtuner_nb.__version__
except ImportError:
    installed = None
if installed != NOTEBOOK_VERSION:
    print(f"This notebook needs xtuner_nb {{NOTEBOOK_VERSION}}; this kernel has {{installed or 'none'}}.")
    print("Run this line in a new cell, restart the kernel, then run this notebook again:")
    print(f'%pip install "xtuner_nb[kernel]=={{NOTEBOOK_VERSION}}"')
    raise SystemExit("xtuner_nb is missing or of another version: see the %pip line above")
print(f"xtuner_nb {{installed}} from {{xtuner_nb.__file__}}")"""


def build_notebook(page: Path) -> nbformat.NotebookNode:
    text = page.read_text(encoding="utf-8")
    rel = page.relative_to(ROOT).as_posix() if page.is_relative_to(ROOT) else str(page)
    nb = nbformat.v4.new_notebook()
    stem = PAGES[page.stem]
    nb.cells.append(nbformat.v4.new_code_cell(setup_check_source(package_version()),
                                              id=f"{stem.replace('_', '-')}-check"))
    for n, (kind, src) in enumerate(split_page(text, rel, page.parent.name)):
        make = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
        nb.cells.append(make(src, id=f"{stem.replace('_', '-')}-{n:02d}"))
    nb.metadata = {
        "kernelspec": dict(KERNELSPEC),
        "language_info": {"name": "python"},
        "xtuner_nb": {"source": rel, "generated_by": "tools/build_notebooks.py (edit the page, not this file)"},
    }
    return nb


def notebook_text(page: Path) -> str:
    return nbformat.writes(build_notebook(page), version=4) + "\n"


def targets(root: Path = ROOT) -> list[tuple[Path, Path]]:
    """(page, notebook) pairs for every language and page."""
    return [(root / "docs" / lang / f"{page}.md", root / "notebooks" / lang / f"{nb}.ipynb")
            for lang in LANGS for page, nb in PAGES.items()]


def unlisted_pages(root: Path = ROOT) -> list[Path]:
    """Pages of docs/<lang>/ that the generator does not know: neither a notebook nor a reference page."""
    return [page for lang in LANGS for page in sorted((root / "docs" / lang).glob("*.md"))
            if page.stem not in PAGES and page.stem not in REFERENCE_PAGES]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only report stale or missing notebooks (exit 1)")
    args = ap.parse_args(argv)
    stale, unlisted = [], unlisted_pages()
    for page in unlisted:
        print(f"{page.relative_to(ROOT)}: not in PAGES (gets a notebook) nor in REFERENCE_PAGES (read only) of "
              f"tools/{Path(__file__).name}; add it to one", file=sys.stderr)
    for page, out in targets():
        if not page.exists():
            print(f"missing page: {page.relative_to(ROOT)}", file=sys.stderr)
            stale.append(out)
            continue
        text = notebook_text(page)
        if out.exists() and out.read_text(encoding="utf-8") == text:
            continue
        stale.append(out)
        if not args.check:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text, encoding="utf-8")
            print(f"wrote {out.relative_to(ROOT)}")
    if args.check and stale:
        print("stale notebooks (run `.venv/bin/python tools/build_notebooks.py`):\n  "
              + "\n  ".join(str(p.relative_to(ROOT)) for p in stale), file=sys.stderr)
        return 1
    return 1 if unlisted else 0


if __name__ == "__main__":
    sys.exit(main())
