"""A setuptools build step: the wheel carries the tutorials (notebooks and the pages they are made from).

The sources stay where they are edited, at the repository root: `docs/<lang>/*.md` (the pages) and
`notebooks/<lang>/*.ipynb` (generated from them by tools/build_notebooks.py). Building a wheel copies them into the
package as `xtuner_nb/_tutorials/{docs,notebooks}/<lang>/`, where `xtuner_nb.tutorials` finds them; the sdist holds
them at the root (MANIFEST.in), so a wheel built from the sdist gets them too. An editable install (`make setup`)
copies nothing: `xtuner_nb.tutorials` then reads the repository's own folders.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
LANGS = ("en", "zh_cn")
SHIPPED = (("notebooks", "*.ipynb"), ("docs", "*.md"))


class BuildPyWithTutorials(build_py):
    def run(self):
        super().run()
        if self.editable_mode:
            return
        for folder, pattern in SHIPPED:
            for lang in LANGS:
                sources = sorted((ROOT / folder / lang).glob(pattern))
                if not sources:  # a wheel without its tutorials would install fine and fail later: stop here
                    raise SystemExit(f"setup.py: no {folder}/{lang}/{pattern} under {ROOT} to ship in the wheel")
                target = Path(self.build_lib) / "xtuner_nb" / "_tutorials" / folder / lang
                self.mkpath(str(target))
                for src in sources:
                    self.copy_file(str(src), str(target / src.name))


setup(cmdclass={"build_py": BuildPyWithTutorials})
