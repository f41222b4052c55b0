"""Pre-flight check of the training data: the mistakes that never crash and leave a model that comes out wrong.

It reads the tokenized data the loader holds (no second tokenization) and counts, per file:
- samples with no trained token (they cost compute and teach nothing);
- samples whose last trained turn does not train its end-of-turn token (the model does not learn to stop);
- samples truncated to `max_length`, with the trained tokens the cut removed;
- exact duplicates (same tokens and labels as an earlier sample);
- the lengths against `max_length` and `pack_max_length`, and how full the packs are;
and, per dataset, whether the training template and the tokenizer's own give the same tokens
(`template_parity.py`) and which template the export carries (`chat_template_export.py`). Each finding names
examples as `path:line`. Findings are warnings; `strict=True` raises `DataCheckError` instead, which the Trainer
does before it builds the model. `check_data(config)` runs it on its own; the Trainer keeps its report as
`trainer.preflight`, and `xtuner_nb.notebook.show_preflight` draws it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from .chat_template_export import ExportTemplate, export_chat_template
from .end_of_turn import end_of_turn_for, trains_end_of_turn
from .sources import find_data_files
from .template_parity import TemplateComparison, compare_templates, describe, read_conversations
from .tokenize_fn import IGNORE_INDEX, encode_texts

logger = logging.getLogger("xtuner_nb.datasets")
EXAMPLES = 5  # path:line examples kept per finding
CUT_COUNTED = 1000  # truncated samples re-tokenized whole to count the trained tokens the cut removed


class DataCheckError(ValueError):
    """`strict=True` and the pre-flight found problems; `report` holds them all."""

    def __init__(self, report: "PreflightReport"):
        self.report = report
        super().__init__("the pre-flight check of the training data found problems (strict=True):\n"
                         + "\n".join(f"- {f.line()}" for f in report.warnings))


@dataclass
class Finding:
    kind: str  # no_trained_token, untrained_end_of_turn, truncated, duplicates, cut_to_pack_max_length, ...
    message: str
    examples: list[str] = field(default_factory=list)  # "path:line"
    severity: str = "warning"  # "warning" (an error with strict=True) or "note"

    def line(self) -> str:
        return self.message + (f" (e.g. {', '.join(self.examples)})" if self.examples else "")


@dataclass
class FileCheck:
    """One data file: counts, and the 1-based lines of the samples behind each finding."""

    name: str
    path: str
    chat_template: str | None
    max_length: int | None
    end_of_turn: str | None
    samples: int
    tokens: int
    trained_tokens: int
    no_trained: list[int]
    untrained_end: list[int]
    truncated: list[int]
    trained_cut: int | None  # trained tokens the truncation removed (None: not counted)
    duplicates: list[tuple[int, str]]  # (line, "path:line" of the sample it repeats)
    lengths: np.ndarray = field(repr=False)  # of the samples used, in file order
    sample_lines: np.ndarray = field(repr=False)  # their 1-based lines

    def where(self, lines: Iterable[int]) -> list[str]:
        return [f"{self.path}:{no}" for no in list(lines)[:EXAMPLES]]


@dataclass
class PreflightReport:
    files: list[FileCheck]
    findings: list[Finding]
    pack_max_length: int
    pack_level: str
    pack_fill: float
    templates: list[TemplateComparison]
    export_template: ExportTemplate
    seconds: float

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def lengths(self) -> np.ndarray:
        return np.concatenate([f.lengths for f in self.files]) if self.files else np.zeros(0, np.int64)

    def table(self):
        """One row per data file (a pandas DataFrame): what the notebook shows."""
        import pandas as pd

        rows = [{"dataset": f.name, "file": f.path.rsplit("/", 1)[-1], "template": f.chat_template,
                 "samples": f.samples, "tokens": f.tokens, "trained": f"{f.trained_tokens / max(f.tokens, 1):.1%}",
                 "no trained token": len(f.no_trained), "end of turn untrained": len(f.untrained_end),
                 "truncated": f"{len(f.truncated)} ({len(f.truncated) / max(f.samples, 1):.1%})",
                 "trained tokens cut": "-" if f.trained_cut is None else f.trained_cut,
                 "duplicates": len(f.duplicates), "longest": int(f.lengths.max()) if len(f.lengths) else 0,
                 "max_length": f.max_length or "-"} for f in self.files]
        return pd.DataFrame(rows)

    def summary(self) -> str:
        lengths = self.lengths()
        p50, p90, p99 = (int(np.percentile(lengths, q)) for q in (50, 90, 99)) if len(lengths) else (0, 0, 0)
        head = (f"pre-flight: {sum(f.samples for f in self.files)} samples in {len(self.files)} file(s), "
                f"length p50 {p50} / p90 {p90} / p99 {p99} / max {int(lengths.max()) if len(lengths) else 0} "
                f"tokens (pack_max_length {self.pack_max_length}, {self.pack_level} packs {self.pack_fill:.1%} "
                f"full); {len(self.warnings)} warning(s); export template: {self.export_template.describe()} "
                f"({self.seconds:.1f} s)")
        return "\n".join([head] + [f"  {f.severity}: {f.line()}" for f in self.findings])

    def __str__(self) -> str:
        return self.summary()


def check_data(config, tokenizer=None, strict: bool = False, stop_token_ids: Iterable[int] = ()) -> PreflightReport:
    """The pre-flight on its own: `config` is a TrainerConfig (its data and `tokenizer_path`) or a DataloaderConfig
    (then pass `tokenizer`). Tokenizes through the data cache, as training does."""
    dl_cfg = getattr(config, "dataloader_cfg", config)
    entries = getattr(config, "dataset_cfg", None) or dl_cfg.dataset_config_list
    if tokenizer is None:
        path = getattr(config, "tokenizer_path", None)
        if path is None:
            from .toy_tokenizer import UTF8ByteTokenizer

            tokenizer = UTF8ByteTokenizer()
        else:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(path),
                                                      trust_remote_code=getattr(config, "trust_remote_code", False))
    loader = dl_cfg.model_copy(update={"dataset_config_list": entries}).build(tokenizer, progress=False)
    return check_loader(loader, entries, tokenizer, strict=strict, stop_token_ids=stop_token_ids)


def check_loader(loader, dataset_config_list: list[dict[str, Any]], tokenizer, *, strict: bool = False,
                 stop_token_ids: Iterable[int] = (), log: logging.Logger | None = None) -> PreflightReport:
    """The report on a built loader (`dataset_config_list`: the entries it was built from, in order). `strict`:
    raise `DataCheckError` when there is a warning; otherwise the warnings are logged."""
    t0 = time.perf_counter()
    files, templates = [], []
    tokenized = [d.file for d in loader.dataset.datasets]  # one JsonlDataset per data file, in the entries' order
    tfs = iter(tokenized)
    for entry in dataset_config_list:
        ds, fn_cfg = entry["dataset"], entry["tokenize_fn"]
        template = getattr(fn_cfg, "chat_template", None)
        for k, _path in enumerate(find_data_files(ds.anno_path)):
            tf = next(tfs)
            files.append(_check_file(ds.name, tf, fn_cfg, tokenizer))
            if k == 0 and isinstance(template, str):
                comparison = compare_templates(template, tf.path, tf.data_format, tokenizer)
                if comparison is not None:
                    templates.append(comparison)
    _mark_duplicates(files, tokenized)
    stats = loader.stats
    report = PreflightReport(files=files, findings=[], pack_max_length=stats.pack_max_length,
                             pack_level=stats.pack_level, pack_fill=stats.fill_ratio, templates=templates,
                             export_template=export_chat_template(dataset_config_list), seconds=0.0)
    report.findings = _findings(report, tokenizer, set(stop_token_ids))
    report.seconds = time.perf_counter() - t0
    if strict and report.warnings:
        raise DataCheckError(report)
    log = log or logger
    log.info(report.summary().split("\n")[0])
    for f in report.findings:
        (log.warning if f.severity == "warning" else log.info)(f"pre-flight: {f.line()}")
    return report


def _check_file(name: str, tf, fn_cfg, tokenizer) -> FileCheck:
    lengths, trained = tf.lengths, tf.loss_counts
    lines = tf.lines
    used = lengths > 0
    eot = end_of_turn_for(fn_cfg, tokenizer)
    truncated = set(tf.truncated_lines)
    no_trained = lines[used & (trained == 0)].tolist()
    ends = trains_end_of_turn(tf, eot, tokenizer) if eot else np.ones(len(tf), bool)
    keep = used & (trained > 0) & ~np.isin(lines, list(truncated)) & ~ends
    return FileCheck(name=name, path=tf.path, chat_template=getattr(fn_cfg, "chat_template", None),
                     max_length=getattr(fn_cfg, "max_length", None), end_of_turn=eot, samples=int(used.sum()),
                     tokens=int(lengths.sum()), trained_tokens=int(trained.sum()), no_trained=no_trained,
                     untrained_end=lines[keep].tolist(), truncated=sorted(truncated),
                     trained_cut=_trained_cut(tf, fn_cfg, tokenizer), duplicates=[], lengths=lengths[used],
                     sample_lines=lines[used])


def _trained_cut(tf, fn_cfg, tokenizer) -> int | None:
    """Trained tokens that truncation removed: the truncated samples tokenized again without `max_length` (the
    first CUT_COUNTED of them; more are extrapolated)."""
    if not tf.truncated_lines:
        return 0
    if getattr(fn_cfg, "max_length", None) is None or not hasattr(fn_cfg, "model_copy"):
        return None
    whole = fn_cfg.model_copy(update={"max_length": None}).build(tokenizer)
    wanted = set(tf.truncated_lines[:CUT_COUNTED])
    kept = dict(zip(tf.lines.tolist(), tf.loss_counts.tolist()))
    cut = counted = 0
    for no, rec in read_conversations(tf.path, tf.data_format, lines=wanted):
        try:
            labels = np.asarray(whole(rec)["labels"])
        except ValueError:  # refused whole as it was truncated: nothing to count
            continue
        cut += int((labels != IGNORE_INDEX).sum()) - kept.get(no, 0)
        counted += 1
    return round(cut * len(tf.truncated_lines) / max(counted, 1))


def _mark_duplicates(files: list[FileCheck], tokenized) -> None:
    """Fill `duplicates`: samples whose tokens and labels equal an earlier sample's, in any file."""
    seen: dict[bytes, str] = {}
    for check, tf in zip(files, tokenized):
        for i in range(len(tf)):
            a, b = int(tf.offsets[i]), int(tf.offsets[i + 1])
            if a == b:
                continue
            key = hashlib.blake2b(tf.input_ids[a:b].tobytes() + b"|" + tf.labels[a:b].tobytes(),
                                  digest_size=16).digest()
            here = f"{tf.path}:{int(tf.lines[i])}"
            if key in seen:
                check.duplicates.append((int(tf.lines[i]), seen[key]))
            else:
                seen[key] = here


def _findings(report: PreflightReport, tokenizer, stop_ids: set[int]) -> list[Finding]:
    out: list[Finding] = []
    for f in report.files:
        n = max(f.samples, 1)
        if f.no_trained:
            cut = len(set(f.no_trained) & set(f.truncated))
            why = "every message has loss false, or no assistant turn" if not cut else (
                f"in {cut} of them truncation cut every trained token" if cut == len(f.no_trained) else
                f"in {cut} of them truncation cut every trained token; the others have loss false on every "
                "message, or no assistant turn")
            out.append(Finding("no_trained_token", f"{f.path}: {len(f.no_trained)} of {f.samples} samples have no "
                               f"trained token ({why}): they cost compute and teach nothing", f.where(f.no_trained)))
        if f.untrained_end:
            out.append(Finding("untrained_end_of_turn", f"{f.path}: {len(f.untrained_end)} of {f.samples} samples "
                               f"do not train the end-of-turn token {f.end_of_turn!r} after their last trained turn: "
                               "the model does not learn to stop", f.where(f.untrained_end)))
        if f.truncated:
            cut = "an unknown number of" if f.trained_cut is None else str(f.trained_cut)
            out.append(Finding("truncated", f"{f.path}: {len(f.truncated)} of {f.samples} samples "
                               f"({len(f.truncated) / n:.1%}) are longer than max_length={f.max_length} and were "
                               f"truncated; {cut} trained tokens were cut (raise max_length, or shorten them)",
                               f.where(f.truncated)))
        if f.duplicates:
            out.append(Finding("duplicates", f"{f.path}: {len(f.duplicates)} samples repeat an earlier sample "
                               "exactly (same tokens and labels), which weights them twice",
                               [f"{f.path}:{no} (= {first})" for no, first in f.duplicates[:EXAMPLES]]))
        over = [int(no) for no, length in zip(f.sample_lines, f.lengths) if length > report.pack_max_length]
        if over and report.pack_level != "hard":
            out.append(Finding("cut_to_pack_max_length", f"{f.path}: {len(over)} samples are longer than "
                               f"pack_max_length={report.pack_max_length} and are cut to it", f.where(over)))
    eots = {f.end_of_turn for f in report.files if f.end_of_turn}
    stops = stop_ids | ({tokenizer.eos_token_id} if isinstance(getattr(tokenizer, "eos_token_id", None), int)
                        else set())
    for eot in sorted(eots):
        ids = encode_texts(tokenizer, [eot])[0]
        if len(ids) != 1 or ids[0] not in stops:
            what = f"is {len(ids)} tokens in this tokenizer" if len(ids) != 1 else "is not a token generation stops at"
            out.append(Finding("end_of_turn_not_a_stop", f"the end-of-turn text {eot!r} that ends every trained "
                               f"answer {what} (stop ids: {sorted(stops)}): exports and inference engines will not "
                               "stop after an answer; use a template whose end of turn is the tokenizer's eos token"))
    for c in report.templates:
        if not c.same:
            out.append(Finding("template_differs", describe(c), [c.example_at] if c.example_at else [], "note"))
    names = sorted({f.chat_template for f in report.files if isinstance(f.chat_template, str)})
    if len(names) > 1:
        out.append(Finding("templates_mixed", f"the datasets use different chat templates ({', '.join(names)}); the "
                           f"export carries {report.export_template.describe()}", [], "note"))
    return out

