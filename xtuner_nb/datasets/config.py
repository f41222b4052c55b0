"""`DatasetConfig` and `DataloaderConfig` with XTuner v1's field names and defaults.

`DataloaderConfig.dataset_config_list` is XTuner's list of `{"dataset": DatasetConfig, "tokenize_fn": ...}` dicts.
`DataloaderConfig.build(tokenizer, dp_mesh, global_batch_size, micro_batch_size, seed)` (XTuner's call) tokenizes
every file once (through the cache), plans the packs and returns the `PackedDataLoader` the Trainer iterates; the
Trainer says its rank with `dp_rank=`/`dp_size=` instead of a device mesh (`build.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pydantic import ConfigDict, Field, TypeAdapter, field_validator, model_validator
from typing_extensions import TypedDict

from ..config.base import XConfig, compat_field, refused_unless_default

if TYPE_CHECKING:
    from .dataloader import PackedDataLoader
    from .jsonl import TokenizedFile


class DatasetConfig(XConfig):
    anno_path: str = Field(..., description="A .jsonl, .json (array) or .parquet file, a folder searched "
                                            "recursively for *.jsonl and *.parquet (sorted; one dataset per file), "
                                            "or a datasets.Dataset object (kept in this process).")
    data_format: Literal["auto", "openai", "sharegpt", "alpaca", "llamafactory"] = Field(
        "auto", description="Format of the records: auto (detected per file from its first record), openai "
                            "(XTuner's messages), sharegpt (conversations from/value), alpaca (instruction/input/"
                            "output), llamafactory (messages with typed content parts).")
    cache_dir: str | None = Field(None, description="Folder for the tokenized-data cache (None: no cache). The "
                                                    "second start with the same file, tokenizer, template and "
                                                    "max_length loads token ids instead of tokenizing.")
    cache_tag: str | None = Field(None, description="With cache_dir: trust a previous run with this tag for the "
                                                    "same file path and skip hashing the file's content.")
    name: str = Field("default", description="Dataset name shown in statistics.")
    sample_ratio: float = Field(1.0, ge=0, description="Use each sample floor(r) times plus a random fraction "
                                                       "(r=0.5: half of the samples, r=2: every sample twice).")
    enable_sequential_sampler: bool = Field(False, description="With a fractional sample_ratio take the first "
                                                               "samples instead of a random subset.")
    skip_bad_lines: bool = Field(False, description="Skip lines that cannot be used (bad JSON, unknown role, ...) "
                                                    "and report how many and which, instead of stopping.")
    # ---- XTuner's fields that do nothing here (compat_field, refused_unless_default): after the real ones ----
    class_name: str = refused_unless_default(
        "JsonlDataset", "only text datasets (JsonlDataset) are supported; XTuner's VLMJsonlDataset is multimodal")
    enable_mmap_shared: bool = compat_field(False, "no effect here (token arrays are loaded in-process)")
    media_root: str | None = compat_field("", "the media folder of multimodal data; no effect (text only)")
    disable_filter: bool = compat_field(
        False, "no effect: empty samples carry no tokens and are always dropped (and counted)")

    @field_validator("anno_path", "cache_dir", mode="before")
    @classmethod
    def _path_to_str(cls, v):
        from .sources import is_dataset_object, register_dataset

        if is_dataset_object(v):  # a datasets.Dataset from the notebook: referred to by its fingerprint
            return register_dataset(v)
        return str(v) if isinstance(v, Path) else v

    def build(self, tokenize_fn, progress: bool | None = None) -> list["TokenizedFile"]:
        """Tokenize every file of this dataset with a *built* tokenize function (one TokenizedFile per file)."""
        from .jsonl import load_tokenized
        from .sources import find_data_files

        return [load_tokenized(f, tokenize_fn, cache_dir=self.cache_dir, cache_tag=self.cache_tag,
                               skip_bad_lines=self.skip_bad_lines, progress=progress, data_format=self.data_format)
                for f in find_data_files(self.anno_path)]


class DataloaderConfig(XConfig):
    dataset_config_list: list[dict[str, Any]] | None = Field(
        None, description='List of {"dataset": DatasetConfig(...), "tokenize_fn": OpenaiTokenizeFunctionConfig(...)} '
                          "(required at build).")
    collator: str = Field("sft_llm_collator", description="'sft_llm_collator' or the dotted path of a function "
                                                          "(instances, pack_max_length, padding_token_idx).")
    pack_to_max_length: bool = Field(True, description="Pad every pack to pack_max_length tokens.")
    pack_level: Literal["soft", "hard", "none", "__legacy", "mllm_hybrid", "preset"] = Field(
        "soft", description="soft: whole samples packed up to pack_max_length; hard: exact windows, samples split at "
                            "the edges; none: one sample per pack.")
    pack_max_length: int = Field(32768, gt=1, description="Tokens per pack (the sequence length of one row).")
    pack_chunk_size: int = Field(10000, gt=0, description="Soft packing works on shuffled chunks of this many "
                                                          "samples.")
    global_pack: bool = Field(True, description="Pack all datasets together (False: each file on its own).")
    group_by_length: bool = Field(True, description="Order packs with the length-grouped sampler (default: "
                                                    "pack_level != 'none'; must be False with pack_level='none').")
    pack_extra_buffer_size: int = Field(100, ge=0, description="Soft packing looks this many samples ahead for "
                                                               "short ones that fill a pack's gap.")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes that collate packs (0: in-process).")
    pad_token_id: int | None = Field(None, description="Padding id (None: the tokenizer's pad, else eos, else 0).")
    tokenizer_hash: str | None = Field(None, description="Use this instead of hashing the tokenizer for cache keys.")
    round_up: bool = Field(True, description="Repeat packs so every step has a full global batch (XTuner "
                                             "default); False: the last step may be short.")
    # ---- XTuner's fields that do nothing here (compat_field, refused_unless_default): after the real ones ----
    pack_workers: int = compat_field(8, "no effect: packing runs in-process", ge=0)
    sampler_type: Literal["none", "preset"] = refused_unless_default(
        "none", "XTuner's preset sampler replays an order read from sampler_config_path; not implemented (the "
                "length-grouped sampler, group_by_length=True, is used)")
    pack_config_path: str | None = refused_unless_default(
        None, "XTuner's preset packs (pack_level='preset') are not implemented; use pack_level='soft' or 'hard'")
    sampler_config_path: str | None = refused_unless_default(
        None, "XTuner's preset sampler order is not implemented; the length-grouped sampler is used")

    @model_validator(mode="before")
    @classmethod
    def _group_by_length_follows_pack_level(cls, data):
        if isinstance(data, dict) and "pack_level" in data and "group_by_length" not in data:
            data = {**data, "group_by_length": data["pack_level"] != "none"}
        return data

    @model_validator(mode="after")
    def _none_needs_no_grouping(self):
        if self.pack_level in ("__legacy", "mllm_hybrid", "preset"):
            raise ValueError(f"DataloaderConfig.pack_level={self.pack_level!r} is not supported by xtuner_nb: it is "
                             "XTuner's debug/multimodal/preset packing; use 'soft' (default), 'hard' or 'none'")
        if self.pack_level == "none" and self.group_by_length:
            raise ValueError("pack_level='none' cannot be used with group_by_length=True; set group_by_length=False")
        return self

    @field_validator("dataset_config_list", mode="before")
    @classmethod
    def _check_entries(cls, v):
        if v is None:
            return v
        if not isinstance(v, (list, tuple)):
            raise ValueError('dataset_config_list must be a list of {"dataset": ..., "tokenize_fn": ...} dicts')
        out = []
        for i, entry in enumerate(v):
            if not isinstance(entry, dict) or set(entry) != {"dataset", "tokenize_fn"}:
                got = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
                raise ValueError(f'dataset_config_list[{i}] must be {{"dataset": DatasetConfig(...), '
                                 f'"tokenize_fn": ...}}, got {got}')
            ds = entry["dataset"]
            if isinstance(ds, dict):
                ds = DatasetConfig.from_dict(ds)
            if not isinstance(ds, DatasetConfig):
                raise ValueError(f"dataset_config_list[{i}]['dataset'] must be a DatasetConfig")
            fn = entry["tokenize_fn"]
            if isinstance(fn, dict) and "__type__" in fn:
                fn = _load_typed(fn)
            if not hasattr(fn, "build"):
                raise ValueError(f"dataset_config_list[{i}]['tokenize_fn'] must be a tokenize-function config with "
                                 "build(tokenizer, ...) (e.g. OpenaiTokenizeFunctionConfig)")
            out.append({"dataset": ds, "tokenize_fn": fn})
        return out

    def build_collator(self):
        """The collate function `collator` names (called with the packs of a batch and the padding settings)."""
        from .collator import collator_by_name

        return collator_by_name(self.collator)

    def build(self, tokenizer, dp_mesh: Any = None, global_batch_size: int | None = None, micro_batch_size: int = 1,
              seed: int = 42, shuffle: bool = True, total_step: int | None = None, *, dp_rank: int | None = None,
              dp_size: int | None = None, progress: bool | None = None) -> "PackedDataLoader":
        """Tokenize (or load from cache), pack and return the loader: `micro_batch_size` packs per batch on this
        rank, the epoch rounded up to whole `global_batch_size`s (None: `micro_batch_size` times the ranks). The
        rank comes from XTuner's `dp_mesh` or from `dp_rank`/`dp_size`; `total_step` has no effect (as in XTuner
        outside its preset sampler); `tokenizer=None` is XTuner's byte-level toy tokenizer."""
        from .build import build_datasets, make_loader, resolve_pad_token_id
        from .sampler import dp_rank_size

        rank, size = dp_rank_size(dp_mesh, dp_rank, dp_size)
        if tokenizer is None:  # as XTuner's Trainer without tokenizer_path
            from .toy_tokenizer import UTF8ByteTokenizer

            tokenizer = UTF8ByteTokenizer()
        datasets = build_datasets(self.dataset_config_list, tokenizer, self.tokenizer_hash, seed=seed,
                                  progress=progress)
        return make_loader(self, datasets, global_batch_size, micro_batch_size, seed, rank, size, shuffle,
                           resolve_pad_token_id(self.pad_token_id, tokenizer), progress)


BaseDataloaderConfig = DataloaderConfig  # XTuner's base class of its one dataloader config


@runtime_checkable
class BaseTokenizeFnConfig(Protocol):
    """What a tokenize-function config offers (XTuner's protocol): `build(tokenizer, ...)` -> a tokenize function."""

    def build(self, tokenizer, tokenizer_hash: str | None = None, anno_name: str | None = None, **kwargs):
        ...


class DatasetCombine(TypedDict):
    dataset: DatasetConfig
    tokenize_fn: BaseTokenizeFnConfig


DatasetConfigList = list[DatasetCombine]
DatasetConfigListAdatper = TypeAdapter(DatasetConfigList, config=ConfigDict(arbitrary_types_allowed=True))


def _load_typed(data: dict):
    from ..config.base import _resolve

    cls = _resolve(data["__type__"])
    return cls.from_dict(data)
