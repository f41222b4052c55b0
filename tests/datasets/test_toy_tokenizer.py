"""XTuner's UTF8ByteTokenizer (used when tokenizer_path=None)."""

import pytest
import torch

from xtuner_nb.datasets.toy_tokenizer import UTF8ByteTokenizer


def test_ids_are_bytes_and_specials():
    tok = UTF8ByteTokenizer()
    assert tok.vocab_size == len(tok) == 262
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (256, 257, 258)
    assert tok.encode("hé") == [104, 0xC3, 0xA9]
    assert tok.encode("a", add_special_tokens=True) == [256, 97, 257]
    assert tok.encode("<img><IMG_CONTEXT><IMG_CONTEXT></img>x") == [259, 260, 260, 261, 120]


def test_decode_skips_specials_and_round_trips():
    tok = UTF8ByteTokenizer()
    text = "你好 🙂 <|im_end|>"
    assert tok.decode([256] + tok.encode(text) + [257, 258]) == text
    assert tok.decode(torch.tensor(tok.encode("ok"))) == "ok"
    with pytest.raises(ValueError):
        tok.decode([-1])
    assert tok.decode([0xE4, 0xBD], errors="replace") == "\ufffd"


def test_batch_call_and_save():
    tok = UTF8ByteTokenizer()
    out = tok(["ab", "cd"], return_tensors="pt")
    assert out["input_ids"].tolist() == [[97, 98], [99, 100]]
    ragged = tok(["ab", "c"], return_tensors="np")
    assert [x.tolist() for x in ragged["input_ids"]] == [[97, 98], [99]]
    assert tok.save_pretrained("/nonexistent/dir") == ()
    assert tok.convert_tokens_to_ids("a") == 97


def test_xtuners_import_paths_give_the_same_class():
    """XTuner's `xtuner.v1.train.UTF8ByteTokenizer` and `xtuner.v1.train.toy_tokenizer.UTF8ByteTokenizer`."""
    from xtuner_nb.train import UTF8ByteTokenizer as from_train
    from xtuner_nb.train.toy_tokenizer import UTF8ByteTokenizer as from_module

    assert from_train is from_module is UTF8ByteTokenizer
