"""XTuner v1's module path `xtuner.v1.train.toy_tokenizer` (a re-export: the tokenizer is in `datasets/`)."""

from ..datasets.toy_tokenizer import UTF8ByteTokenizer

__all__ = ["UTF8ByteTokenizer"]
