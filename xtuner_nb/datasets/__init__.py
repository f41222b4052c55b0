"""Data: conversations (OpenAI messages, ShareGPT, Alpaca, LLaMA-Factory, XTuner's FTDP; .jsonl, .json, .parquet,
a `datasets.Dataset`) -> tokens with assistant-only labels -> packs (XTuner v1's `xtuner.v1.datasets`).

    from xtuner_nb.datasets import DatasetConfig, DataloaderConfig, OpenaiTokenizeFunctionConfig
    dataloader_cfg = DataloaderConfig(
        dataset_config_list=[{"dataset": DatasetConfig(anno_path="data.jsonl", cache_dir="cache"),
                              "tokenize_fn": OpenaiTokenizeFunctionConfig(chat_template="qwen3", max_length=4096)}],
        pack_max_length=4096)
    loader = dataloader_cfg.build(tokenizer, dp_mesh=None, global_batch_size=1, micro_batch_size=1, seed=42)
    print(loader.stats)

XTuner's lower-level path works too: `build_datasets` (one `JsonlDataset` per file), the pack datasets
(`ExpandSoftPackDataset`, `HardPackDataset`) and `build_dataloader(dataloader_config=, datasets=, ...)`. XTuner's
vision-language, RL and preset-pack names import and refuse with the reason when used (`unsupported.py`).
"""

from .build import build_dataloader, build_datasets
from .chat_template_named import CHAT_TEMPLATE_MAP, HybridChatTemplate
from .collator import fake_collator, sft_llm_collator
from .config import (BaseTokenizeFnConfig, DataloaderConfig, DatasetCombine, DatasetConfig, DatasetConfigList,
                     DatasetConfigListAdatper)
from .dataloader import PackedDataLoader
from .demo import demo_data_path, demo_prompts, demo_texts, identity_data_path, identity_prompts
from .errors import DataFormatError
from .ftdp import FTDPTokenizeFnConfig, FtdpTokenizeFunction
from .jsonl import JsonlDataset
from .packing import ExpandSoftPackDataset, HardPackDataset
from .preflight import DataCheckError, PreflightReport, check_data
from .preview import label_spans, tokenize_samples
from .sampler import LengthGroupedSampler, ParallelSampler
from .stats import DatasetStats, LoaderStats
from .tokenize_fn import (CachableTokenizeFunction, OpenaiTokenizeFunction, OpenaiTokenizeFunctionConfig,
                          PretrainTokenizeFunction, PretrainTokenizeFunctionConfig, tokenizer_hash)
from .unsupported import NAMES as _UNSUPPORTED
from .utils import calculate_file_sha256, calculate_xxhash

globals().update(_UNSUPPORTED)

__all__ = ["DatasetConfig", "DataloaderConfig", "OpenaiTokenizeFunctionConfig", "PretrainTokenizeFunctionConfig",
           "OpenaiTokenizeFunction", "PretrainTokenizeFunction", "CachableTokenizeFunction", "DataFormatError",
           "FTDPTokenizeFnConfig", "FtdpTokenizeFunction", "JsonlDataset", "ExpandSoftPackDataset", "HardPackDataset",
           "ParallelSampler", "LengthGroupedSampler", "build_datasets", "build_dataloader", "sft_llm_collator",
           "fake_collator", "BaseTokenizeFnConfig", "DatasetCombine", "DatasetConfigList", "DatasetConfigListAdatper",
           "CHAT_TEMPLATE_MAP", "HybridChatTemplate", "tokenizer_hash", "calculate_file_sha256", "calculate_xxhash",
           "tokenize_samples", "label_spans", "demo_data_path", "demo_prompts", "demo_texts", "identity_data_path",
           "identity_prompts", "PackedDataLoader", "LoaderStats", "DatasetStats", "check_data", "PreflightReport",
           "DataCheckError", *_UNSUPPORTED]
