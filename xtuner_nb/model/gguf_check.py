"""Run a GGUF in llama.cpp itself and compare its answers with transformers' answers on the HF export.

llama.cpp here is the prebuilt CPU build that the npm package `node-llama-cpp` ships (its library and Node.js
bindings, pinned in `xtuner_nb.assets`, installed once with npm; no build). Each prompt is rendered by the
runner from the chat template stored in the GGUF (`tokenizer.chat_template`, through node-llama-cpp's
`JinjaTemplateChatWrapper`), with no system prompt of the runner's own, and answered greedily (temperature 0)
until an end-of-generation token, as `llama-cli`/`llama-server` users and Ollama get it. transformers answers the
same prompts on the HF folder the GGUF was made from, with its own `apply_chat_template` and greedy `generate`.
Without Node.js or npm, `check_gguf` says so in its result instead of failing.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

DEFAULT_PROMPTS = ["What is your name?", "What is the capital of France?", "Say hello in one short sentence."]

# the runner: reads {model, prompts, maxTokens, threads} on stdin, writes one JSON list on stdout
RUNNER_JS = r"""
import {getLlama, JinjaTemplateChatWrapper, LlamaLogLevel} from "node-llama-cpp";
import {readFileSync} from "node:fs";

const req = JSON.parse(readFileSync(0, "utf8"));
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath: req.model});
const template = model.fileInfo.metadata?.tokenizer?.chat_template;
if (!template) throw new Error(`${req.model}: the GGUF holds no tokenizer.chat_template`);
const wrapper = new JinjaTemplateChatWrapper({template, tokenizer: model.tokenizer});
const context = await model.createContext({contextSize: req.contextSize, threads: req.threads});
const out = [];
for (const prompt of req.prompts) {
  const sequence = context.getSequence();
  const {contextText} = wrapper.generateContextState({
    chatHistory: [{type: "user", text: prompt}, {type: "model", response: []}]});
  const promptTokens = contextText.tokenize(model.tokenizer);
  const tokens = [];
  for await (const token of sequence.evaluate(promptTokens, {temperature: 0})) {
    if (model.isEogToken(token)) break;
    tokens.push(token);
    if (tokens.length >= req.maxTokens) break;
  }
  out.push({prompt, promptTokens, tokens, text: model.detokenize(tokens)});
  sequence.dispose();
}
process.stdout.write(JSON.stringify(out));
await context.dispose();
await model.dispose();
await llama.dispose();
"""


@dataclass
class GGUFCheck:
    """llama.cpp's and transformers' greedy answers to the same prompts; `llama_cpp` is None (and `unavailable`
    says why) when llama.cpp could not be run here."""

    gguf: str
    hf_dir: str
    prompts: list[str]
    transformers: list[str] = field(default_factory=list)
    llama_cpp: list[str] | None = None
    same_prompt_tokens: list[bool] = field(default_factory=list)
    unavailable: str | None = None

    @property
    def equal(self) -> int:
        return sum(a == b for a, b in zip(self.llama_cpp or [], self.transformers))

    @property
    def passed(self) -> bool:
        return self.llama_cpp is not None and self.equal == len(self.prompts)

    def summary(self) -> str:
        if self.llama_cpp is None:
            return f"GGUF not checked in llama.cpp: {self.unavailable}"
        lines = [f"GGUF in llama.cpp vs the HF export in transformers (greedy, the GGUF's own chat template): "
                 f"{self.equal} of {len(self.prompts)} answers equal"]
        for p, a, b in zip(self.prompts, self.llama_cpp, self.transformers):
            if a != b:
                lines.append(f"  {p!r}: llama.cpp {a!r} vs transformers {b!r}")
        return "\n".join(lines)


def llama_cpp_answers(gguf: str | Path, prompts: Sequence[str], max_new_tokens: int = 32,
                      timeout: float = 600) -> list[dict]:
    """Greedy answers of llama.cpp (node-llama-cpp) to one-turn conversations: `[{prompt, promptTokens, tokens,
    text}]`. Raises `AssetUnavailable` when Node.js or npm is missing, RuntimeError when the runner fails."""
    from ..assets import node_llama_cpp_dir

    folder = node_llama_cpp_dir()
    script = folder / "xtuner_nb_generate.mjs"
    if not script.is_file() or script.read_text() != RUNNER_JS:
        script.write_text(RUNNER_JS)
    request = {"model": str(Path(gguf).resolve()), "prompts": list(prompts), "maxTokens": max_new_tokens,
               "threads": max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else
                              os.cpu_count() or 1), "contextSize": 2048}
    proc = subprocess.run(["node", str(script)], input=json.dumps(request), capture_output=True, text=True,
                          timeout=timeout, cwd=folder)
    if proc.returncode != 0:
        raise RuntimeError(f"llama.cpp (node-llama-cpp) failed on {gguf} (exit code {proc.returncode}):\n"
                           + "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:]))
    return json.loads(proc.stdout)


def transformers_answers(hf_dir: str | Path, prompts: Sequence[str], max_new_tokens: int = 32) -> list[dict]:
    """Greedy answers of transformers on an HF folder, prompted by its tokenizer's chat template:
    `[{prompt, promptTokens, tokens, text}]`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(hf_dir))
    model = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()
    out = []
    for prompt in prompts:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                            tokenize=True, return_dict=True)["input_ids"]
        with torch.no_grad():
            gen = model.generate(torch.tensor([ids]), max_new_tokens=max_new_tokens, do_sample=False,
                                 temperature=None, top_p=None, top_k=None)[0, len(ids):].tolist()
        eos = model.generation_config.eos_token_id
        stops = set(eos if isinstance(eos, list) else [eos])
        tokens = gen[:next((k for k, t in enumerate(gen) if t in stops), len(gen))]
        out.append({"prompt": prompt, "promptTokens": list(ids), "tokens": tokens,
                    "text": tokenizer.decode(tokens, skip_special_tokens=True)})
    return out


def check_gguf(gguf: str | Path, hf_dir: str | Path, prompts: Sequence[str],
               max_new_tokens: int = 32) -> GGUFCheck:
    """Answer `prompts` with the GGUF in llama.cpp and with the HF folder in transformers; see `GGUFCheck`."""
    from ..assets import AssetUnavailable

    result = GGUFCheck(str(gguf), str(hf_dir), list(prompts))
    try:
        theirs = llama_cpp_answers(gguf, prompts, max_new_tokens)
    except AssetUnavailable as exc:
        result.unavailable = (f"{exc}. Install Node.js and npm to let xtuner_nb fetch llama.cpp's prebuilt build "
                              "(npm node-llama-cpp), or run the file in your own llama.cpp")
        return result
    ours = transformers_answers(hf_dir, prompts, max_new_tokens)
    result.transformers = [a["text"].strip() for a in ours]
    result.llama_cpp = [a["text"].strip() for a in theirs]
    result.same_prompt_tokens = [a["promptTokens"] == b["promptTokens"] for a, b in zip(theirs, ours)]
    return result
