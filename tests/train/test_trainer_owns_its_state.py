"""The Trainer owns its run: no module but `train/trainer.py` assigns an attribute of a Trainer.

Other modules get explicit values and return values (checkpoint/, build.py, evaluate.py, the hooks); when one of
them wrote `trainer._x`, a reader of the Trainer could not know where its state changed.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "xtuner_nb"
TRAINER_FILE = PACKAGE / "train" / "trainer.py"


def _names_a_trainer(node: ast.AST, annotated: set[str]) -> bool:
    """`trainer`, `self.trainer`, `x.trainer`, or a name annotated as a Trainer."""
    if isinstance(node, ast.Name):
        return node.id == "trainer" or node.id in annotated
    return isinstance(node, ast.Attribute) and node.attr == "trainer"


def _trainer_annotated_names(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None and "Trainer" in ast.unparse(node.annotation):
            names.add(node.arg)
    return names


def trainer_writes(path: Path) -> list[str]:
    """Each `<trainer>.x = ...` (also augmented/annotated, tuple targets, `del`) and `setattr(<trainer>, ...)`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    annotated = _trainer_annotated_names(tree)
    found = []

    def targets(node: ast.AST):
        if isinstance(node, (ast.Tuple, ast.List)):
            for elt in node.elts:
                yield from targets(elt)
        elif isinstance(node, ast.Starred):
            yield from targets(node.value)
        else:
            yield node

    for node in ast.walk(tree):
        written = []
        if isinstance(node, ast.Assign):
            written = [t for target in node.targets for t in targets(target)]
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            written = [node.target]
        elif isinstance(node, ast.Delete):
            written = [t for target in node.targets for t in targets(target)]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr") \
                and node.args and _names_a_trainer(node.args[0], annotated):
            found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {ast.unparse(node)}")
        for t in written:
            if isinstance(t, ast.Attribute) and _names_a_trainer(t.value, annotated):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {ast.unparse(t)} = ...")
            elif isinstance(t, ast.Subscript) and isinstance(t.value, ast.Attribute) and t.value.attr == "__dict__" \
                    and _names_a_trainer(t.value.value, annotated):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {ast.unparse(t)} = ...")
    return found


def test_no_module_but_the_trainers_own_assigns_a_trainer_attribute():
    files = [p for p in sorted(PACKAGE.rglob("*.py")) if p != TRAINER_FILE]
    assert len(files) > 50
    assert [w for p in files for w in trainer_writes(p)] == []


def test_the_check_sees_every_kind_of_write(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "def save(trainer):\n"
        "    trainer._pending = 1\n"
        "    trainer.cur_step, x = 2, 3\n"
        "    trainer.elapsed += 1.0\n"
        "    setattr(trainer, 'rows', [])\n"
        "class Hook:\n"
        "    def on_fit_begin(self):\n"
        "        self.trainer.cur_epoch = 5\n"
        "def resume(t: 'Trainer'):\n"
        "    t.cur_step = 4\n"
        "    t.__dict__['x'] = 1\n"
        "def reads(trainer):\n"
        "    return trainer.cur_step, [trainer.rows]\n", encoding="utf-8")
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path
    try:
        found = trainer_writes(probe)
    finally:
        PACKAGE = saved
    assert sorted(int(f.split(" ", 1)[0].rsplit(":", 1)[1]) for f in found) == [2, 3, 4, 5, 8, 10, 11]
