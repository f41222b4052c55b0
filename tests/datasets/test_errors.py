"""Bad input fails at build time with one error type naming the file, the 1-based line and what is wrong."""

import logging
import re

import pytest

from xtuner_nb.datasets import DataFormatError

from .conftest import chat, loader_cfg, write_jsonl

GOOD = chat("Hi", "Hello")


@pytest.mark.parametrize("bad_line, detail", [
    ('[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"', r"invalid JSON \(.*column"),
    ([{"role": "bot", "content": "Hi"}], r"message 1 has unknown role 'bot' \(expected one of system, developer"),
    ([{"role": "user", "content": "Hi", "lang": "en"}], r"message 1 \(user\) has unknown key 'lang'"),
    ([{"role": "user", "content": "Hi"}, {"role": "assistant"}], r"message 2 \(assistant\) has no content"),
    ([{"role": "user", "content": None}], r"message 1 \(user\) has no content"),
    ({"conversation": []}, r"expected a list of messages, or an object with a 'messages'"),
    ([{"role": "user", "content": "Hi", "loss": "yes"}], r"'loss' must be true or false"),
    ([{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": "{oops"}}]}],
     r"tool call 1 arguments are not valid JSON"),
])
def test_bad_line_names_file_line_and_problem(tmp_path, tiny_tok, bad_line, detail):
    path = write_jsonl(tmp_path / "data.jsonl", [GOOD, GOOD, bad_line, GOOD])
    with pytest.raises(DataFormatError) as info:
        loader_cfg(path).build(tiny_tok)
    err = info.value
    assert str(err).startswith(f"{path}, line 3: ")
    assert re.search(detail, str(err)), str(err)
    assert (err.path, err.line) == (str(path), 3)


def test_non_utf8_file(tmp_path, tiny_tok):
    path = write_jsonl(tmp_path / "latin1.jsonl", [GOOD])
    path.write_bytes(path.read_bytes() + '[{"role": "user", "content": "café"}]\n'.encode("latin-1"))
    with pytest.raises(DataFormatError, match=r"latin1\.jsonl, line 2: not valid UTF-8 \(byte 0xe9"):
        loader_cfg(path).build(tiny_tok)


def test_missing_file_and_folder(tmp_path, tiny_tok):
    with pytest.raises(DataFormatError, match=r"nope\.jsonl: file not found"):
        loader_cfg(tmp_path / "nope.jsonl").build(tiny_tok)
    with pytest.raises(DataFormatError, match=r"no_such_dir: folder not found"):
        loader_cfg(tmp_path / "no_such_dir").build(tiny_tok)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFormatError, match=r"empty: folder contains no \*\.jsonl or \*\.parquet files"):
        loader_cfg(tmp_path / "empty").build(tiny_tok)


def test_template_problem_is_reported_with_line(tmp_path, tiny_tok):
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD, [{"role": "user", "content": "a"},
                                                     {"role": "assistant", "content": "b", "thinking": "t"}]])
    with pytest.raises(DataFormatError, match=r"d\.jsonl, line 2: message 2: 'thinking' is not supported"):
        loader_cfg(path).build(tiny_tok)


def test_skip_bad_lines_reports_count_and_lines(tmp_path, tiny_tok, caplog):
    path = write_jsonl(tmp_path / "mixed.jsonl", [GOOD, "{broken", GOOD, [{"role": "bot", "content": "x"}], GOOD])
    with caplog.at_level(logging.WARNING, logger="xtuner_nb.datasets"):
        loader = loader_cfg(path, skip_bad_lines=True, pack_max_length=64).build(tiny_tok)
    assert loader.stats.skipped_lines == 2
    assert loader.stats.datasets[0].skipped_lines == [2, 4]
    assert loader.stats.samples == 3
    assert "skipped 2 bad line(s)" in caplog.text and "lines 2, 4" in caplog.text


def test_empty_conversations_dropped_and_counted(tmp_path, tiny_tok):
    path = write_jsonl(tmp_path / "e.jsonl", [GOOD, [], {"messages": []}, GOOD, "", "   "])
    loader = loader_cfg(path, pack_max_length=64).build(tiny_tok)
    assert loader.stats.dropped_empty == 2 and loader.stats.samples == 2
    assert [loader.sample(i)["line"] for i in range(2)] == [1, 4]  # blank lines are ignored, not errors


def test_all_lines_unusable(tmp_path, tiny_tok):
    path = write_jsonl(tmp_path / "none.jsonl", [[]])
    with pytest.raises(ValueError, match="no usable samples"):
        loader_cfg(path).build(tiny_tok)


def test_error_survives_pickling():
    import pickle

    err = pickle.loads(pickle.dumps(DataFormatError("a.jsonl", 7, "bad")))
    assert str(err) == "a.jsonl, line 7: bad" and err.line == 7
