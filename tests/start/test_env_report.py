"""`xtuner_nb.env_report()` / `xtuner-nb env` on this machine (CPU), with real checkpoint folders, good and broken."""

from __future__ import annotations

import shutil

import torch

import xtuner_nb
from xtuner_nb.env import EnvReport, attention_backend, training_precision
from xtuner_nb.train.cli import main


def by_name(report: EnvReport) -> dict:
    return {c.name: c for c in report.checks}


def test_report_on_this_cpu_machine():
    report = xtuner_nb.env_report()
    checks = by_name(report)
    assert list(checks) == ["python", "xtuner_nb", "torch", "transformers", "versions", "gpu", "memory",
                            "precision", "attention", "widgets", "checkpoint"]
    assert checks["torch"].value.startswith(torch.__version__)
    assert checks["xtuner_nb"].value.startswith(xtuner_nb.__version__)
    if not torch.cuda.is_available():
        assert checks["gpu"].value.startswith("none") and not checks["gpu"].problem
        assert checks["precision"].value.startswith("float32")
        assert checks["attention"].value.startswith("loop: ")
    # the report asks the parts that decide, so it follows their choices
    device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    assert checks["precision"].value.startswith(training_precision(device).name)
    assert checks["attention"].value.startswith(attention_backend(device, training_precision(device).compute))
    text = str(report)
    assert len(text.splitlines()) <= 1 + 2 * len(report.checks)  # one screen: a line per check, a fix per problem
    assert repr(report) == text


def test_a_forced_attention_backend_is_named(monkeypatch):
    monkeypatch.setenv("XTUNER_NB_VARLEN_BACKEND", "loop")
    assert by_name(xtuner_nb.env_report())["attention"].value == "loop: forced by XTUNER_NB_VARLEN_BACKEND=loop"


def test_a_readable_checkpoint(tiny_ckpt):
    check = by_name(xtuner_nb.env_report(tiny_ckpt))["checkpoint"]
    assert not check.problem, check
    assert f"{tiny_ckpt}: qwen3, 1 safetensors file(s)" in check.value and "tokenizer" in check.value


def test_broken_checkpoints_each_get_a_fix(tiny_ckpt, tmp_path):
    cases = {}
    cases["not found"] = tmp_path / "missing"
    no_weights = tmp_path / "no_weights"
    shutil.copytree(tiny_ckpt, no_weights)
    for f in no_weights.glob("*.safetensors"):
        f.unlink()
    cases["no *.safetensors files"] = no_weights
    truncated = tmp_path / "truncated"
    shutil.copytree(tiny_ckpt, truncated)
    shard = next(truncated.glob("*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:100])
    cases["cannot read it"] = truncated
    no_config = tmp_path / "no_config"
    shutil.copytree(tiny_ckpt, no_config)
    (no_config / "config.json").unlink()
    cases["no config.json"] = no_config
    for what, path in cases.items():
        report = xtuner_nb.env_report(path)
        check = by_name(report)["checkpoint"]
        assert check.problem and check.fix and what in check.value, (what, check)
        assert check in report.problems
        assert f"✗ checkpoint   {path}: {what}" in str(report) and f"  fix: {check.fix}" in str(report)


def test_cli_env_exits_1_on_a_problem(tmp_path, capsys):
    assert main(["env", "--checkpoint", str(tmp_path / "nope")]) == 1
    out = capsys.readouterr().out
    # the header counts the ✗ lines: the missing checkpoint, and a release newer than the tested ranges when pip gave
    # one (peft 0.22.0 came out on the day this test first read "2 problems")
    problems = [line for line in out.splitlines() if line.startswith("✗")]
    assert any(line.startswith("✗ checkpoint") for line in problems), out
    assert all(line.startswith(("✗ checkpoint", "✗ versions")) for line in problems), out
    n = len(problems)
    assert out.startswith(f"xtuner_nb environment: {n} problem{'s' if n > 1 else ''}\n"), out


def test_env_report_and_trainer_agree_on_a_simulated_t4():
    """One precision rule: on a T4 (sm75, no bf16) the Trainer trains in fp16 with loss scaling, and the report says
    so (it asks the same function; it once said "bf16 ... emulated" while the Trainer used fp16)."""
    from xtuner_nb.config import FSDPConfig
    from xtuner_nb.env import precision_check
    from xtuner_nb.train.precision import choose_precision

    t4 = training_precision(torch.device("cuda", 0), capability=(7, 5))
    assert t4 == choose_precision(FSDPConfig(), torch.device("cuda", 0), capability=(7, 5))
    assert t4.compute == torch.float16 and t4.loss_scaling
    assert precision_check(t4).value.startswith("float16 compute") and "loss scaling" in precision_check(t4).value
    h100 = training_precision(torch.device("cuda", 0), capability=(9, 0))
    assert h100.compute == torch.bfloat16 and precision_check(h100).value.startswith("bfloat16 compute")


def test_versions_outside_the_tested_ranges_are_named_and_pyproject_floors_are_the_tested_floors():
    import re
    import tomllib
    from pathlib import Path

    from xtuner_nb.env import env_report
    from xtuner_nb.versions import TESTED, outside_tested

    import platform
    from importlib.metadata import PackageNotFoundError, version

    def installed(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    # the report's verdict on this kernel is the table's (the dev VM's stack is inside it; a CI machine that pip
    # gave a release newer than the matrix gets the warning, naming it)
    check = next(c for c in env_report().checks if c.name == "versions")
    here = outside_tested({"python": platform.python_version(), **{n: installed(n) for n in TESTED if n != "python"}})
    assert bool(check.problem) == bool(here) and all(entry in check.value for entry in here), (check.value, here)
    assert outside_tested({"python": "3.11.7", "torch": "2.13.0+cpu", "transformers": "4.57.6", "peft": None}) == []
    assert outside_tested({"torch": "2.6.0", "transformers": "5.26.0.dev0", "safetensors": "0.4.3"}) == [
        f"torch 2.6.0 (tested {TESTED['torch'][0]} – {TESTED['torch'][1]})",
        f"transformers 5.26.0.dev0 (tested {TESTED['transformers'][0]} – {TESTED['transformers'][1]})"]

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    floors = dict(re.fullmatch(r"([\w-]+)>=([\d.]+)", d).groups()
                  for d in project["dependencies"] + project["optional-dependencies"]["lora"] if ">=" in d)
    floors["python"] = project["requires-python"].removeprefix(">=")
    assert {name: floors[name] for name in TESTED} == {name: low for name, (low, _) in TESTED.items()}
