"""XTuner v1's `xtuner.v1.datasets` names for what this project does not do: importable, refusing with the reason
when used (see `xtuner_nb._unsupported`)."""

from .._unsupported import unsupported_names

_VL = "vision-language data is not supported (this project trains dense text models)"
_PRESET = ("XTuner's preset packs and sampler replay an order saved by an offline tool; not implemented (use "
           "pack_level='soft' or 'hard')")
_LONG_TEXT = ("XTuner's chunked tokenization of very long pretraining texts is not implemented; "
              "PretrainTokenizeFunctionConfig tokenizes each text whole")

NAMES = unsupported_names(__name__, {
    "PresetPackDataset": _PRESET, "PresetSampler": _PRESET,
    "_LegacySoftPackDataset": "XTuner's debug packing (pack_level='__legacy'); use ExpandSoftPackDataset",
    "MLLMPretrainHybridPackDataset": _VL, "VLMJsonlDataset": _VL, "InternS1VLTokenizeFnConfig": _VL,
    "InternS1VLTokenizeFunction": _VL, "Qwen3VLTokenizeFnConfig": _VL, "Qwen3VLTokenizeFunction": _VL,
    "intern_s1_vl_sft_collator": _VL, "qwen3_vl_sft_collator": _VL,
    "LongTextPretrainTokenizeFunction": _LONG_TEXT, "LongTextPretrainTokenizeFunctionConfig": _LONG_TEXT,
    "RLTokenizeFnConfig": "RL data is not supported", "RLTextTokenizeFnConfig": "RL data is not supported",
})
