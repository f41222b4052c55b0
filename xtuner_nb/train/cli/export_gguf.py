"""`xtuner-nb export-gguf HF_DIR [OUT.gguf] [--outtype f16]`: an HF export to one GGUF file (llama.cpp, Ollama)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_export_gguf_parser(sub) -> None:
    from ...model.gguf_export import GGUF_OUTTYPES

    p = sub.add_parser("export-gguf", help="convert an HF export (hf-<step>/) to GGUF with llama.cpp's converter")
    p.add_argument("hf_dir", type=Path, help="HF model folder: config.json, *.safetensors and the tokenizer")
    p.add_argument("out", type=Path, nargs="?", help="the .gguf file to write (default: HF_DIR/model-OUTTYPE.gguf)")
    p.add_argument("--outtype", choices=GGUF_OUTTYPES, default="f16",
                   help="weight type: f32 (exact), f16/bf16 (half the size), q8_0 (a quarter); default f16")
    p.add_argument("--verbose", action="store_true", help="show the converter's full log")
    p.set_defaults(run=run_export_gguf)


def run_export_gguf(args: argparse.Namespace) -> int:
    from ...model.gguf_export import GGUFExportError, export_gguf

    try:
        export_gguf(args.hf_dir, args.out, args.outtype, verbose=args.verbose)
    except GGUFExportError as exc:
        print(f"xtuner-nb export-gguf: error: {exc}", file=sys.stderr)
        return 1
    return 0
