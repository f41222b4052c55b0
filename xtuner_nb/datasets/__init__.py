"""Data: conversations (OpenAI messages, ShareGPT, Alpaca, LLaMA-Factory; .jsonl, .json, .parquet, a
`datasets.Dataset`) -> tokens with assistant-only labels -> packs (XTuner v1's `xtuner.v1.datasets`).

    from xtuner_nb.datasets import DatasetConfig, DataloaderConfig, OpenaiTokenizeFunctionConfig
    dataloader_cfg = DataloaderConfig(
        dataset_config_list=[{"dataset": DatasetConfig(anno_path="data.jsonl", cache_dir="cache"),
                              "tokenize_fn": OpenaiTokenizeFunctionConfig(chat_template="qwen3", max_length=4096)}],
        pack_max_length=4096)
    loader = dataloader_cfg.build(tokenizer, dp_rank=0, dp_size=1, micro_batch_size=1, seed=42)
    print(loader.stats)
"""

from .collator import sft_llm_collator
from .config import DataloaderConfig, DatasetConfig
from .dataloader import DatasetStats, LoaderStats, PackedDataLoader
from .errors import DataFormatError
from .tokenize_fn import (CachableTokenizeFunction, OpenaiTokenizeFunction, OpenaiTokenizeFunctionConfig,
                          PretrainTokenizeFunction, PretrainTokenizeFunctionConfig, tokenizer_hash)
from .chat_template_named import CHAT_TEMPLATE_MAP, HybridChatTemplate
from .demo import demo_data_path, demo_prompts, demo_texts, identity_data_path, identity_prompts
from .preview import label_spans, tokenize_samples
from .preflight import DataCheckError, PreflightReport, check_data


__all__ = ["DatasetConfig", "DataloaderConfig", "OpenaiTokenizeFunctionConfig", "PretrainTokenizeFunctionConfig",
           "OpenaiTokenizeFunction", "PretrainTokenizeFunction", "CachableTokenizeFunction", "DataFormatError",
           "CHAT_TEMPLATE_MAP", "HybridChatTemplate", "tokenizer_hash", "tokenize_samples", "label_spans",
           "demo_data_path", "demo_prompts", "demo_texts", "identity_data_path", "identity_prompts",
           "PackedDataLoader", "LoaderStats", "DatasetStats", "sft_llm_collator", "check_data", "PreflightReport",
           "DataCheckError"]
