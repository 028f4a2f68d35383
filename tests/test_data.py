"""fr3e.data.paper: every loader on small fixture files in the hub formats, the offline error, --data parsing."""

from __future__ import annotations

from pathlib import Path

import datasets
import huggingface_hub
import pytest

from fr3e.data import paper as data
from fr3e.data.paper import BENCHMARKS, COLUMNS, DATASETS, INSTRUCTION, TRAIN_MIX, DataError

FIXTURES = Path(__file__).parent / "fixtures" / "data"
FILES = {
    "deepscaler": "deepscaler.json",
    "simplerl_zoo": "simplerl_zoo.parquet",
    "aime24": "aime24.jsonl",
    "gsm8k": "gsm8k.jsonl",
    "math500": "math500.jsonl",
    "minerva_math": "minerva_math.jsonl",
    "gaokao2023en": "gaokao2023en.jsonl",
    "olympiadbench": "olympiadbench.jsonl",
}

# Gold answers a reader gets by looking at each fixture file.
EXPECTED_ANSWERS = {
    "aime24": ["040", "7", "24"],  # leading zero kept: the hub stores answers as text
    "gsm8k": ["72", "950", "1200"],  # the part after '####', thousands comma removed
    "math500": ["12", "5", "\\frac{3}{4}"],
    "minerva_math": ["620", "10", "9"],
    "gaokao2023en": ["\\{2,3\\}", "7", "3"],  # '$' delimiters stripped
    "olympiadbench": ["2", "3, -3", "16"],  # final_answer list joined, outer '$' stripped
    "deepscaler": ["13", "8", "1", "15"],
    "simplerl_zoo": ["4", "9\\pi", "15"],  # the 4th row has no gold answer and is dropped
}


def test_every_dataset_has_a_fixture_and_the_table_is_consistent():
    assert set(FILES) == set(DATASETS) == set(BENCHMARKS) | set(TRAIN_MIX)
    for name, spec in DATASETS.items():
        assert spec.name == name
        assert spec.hub_id.count("/") == 1, spec
        assert spec.answer_format in data._ANSWER_FORMATS


@pytest.mark.parametrize("name", sorted(FILES))
def test_loader_normalises_fixture(name):
    ds = data.load_benchmark(name, local=FIXTURES / FILES[name])
    assert ds.column_names == list(COLUMNS)
    assert all(isinstance(v, str) for row in ds for v in row.values())
    assert ds["answer"] == EXPECTED_ANSWERS[name]
    assert set(ds["data_source"]) == {name}
    assert len(set(ds["id"])) == len(ds)
    for prompt in ds["prompt"]:
        assert prompt.endswith("\n" + INSTRUCTION)
        assert prompt.count(INSTRUCTION) == 1


def test_field_details():
    gsm = data.load_benchmark("gsm8k", local=FIXTURES / "gsm8k.jsonl")
    assert gsm[0]["prompt"] == ("Ann buys 3 boxes of 24 pencils. How many pencils does she have?\n" + INSTRUCTION)
    assert gsm[0]["solution"].endswith("#### 72")
    assert gsm[0]["id"] == "gsm8k-0"

    math500 = data.load_benchmark("math500", local=FIXTURES / "math500.jsonl")
    assert math500["id"][0] == "math500-test/prealgebra/1.json"
    assert math500["difficulty"] == ["1", "2", "1"]  # MATH level, int in the hub data

    aime = data.load_benchmark("aime24", local=FIXTURES / "aime24.jsonl")
    assert aime["id"] == ["aime24-60", "aime24-61", "aime24-62"]

    olympiad = data.load_benchmark("olympiadbench", local=FIXTURES / "olympiadbench.jsonl")
    assert olympiad[0]["solution"] == "We have $n(n-2)=0$ so $n=2$."  # list of one solution -> text

    zoo = data.load_benchmark("simplerl_zoo", local=FIXTURES / "simplerl_zoo.parquet")
    # The prompt is rebuilt from extra_info.question, not the stored chat-templated text.
    assert zoo[0]["prompt"] == "If $3x + 2 = 14$, what is $x$?\n" + INSTRUCTION
    assert set(zoo["difficulty"]) == {"math-level3to5"}


def test_limit_keeps_first_rows():
    ds = data.load_benchmark("gsm8k", local=FIXTURES / "gsm8k.jsonl", limit=2)
    assert ds["answer"] == ["72", "950"]


def test_train_mix_from_local_files_dedupes():
    local = {"deepscaler": FIXTURES / "deepscaler.json", "simplerl_zoo": FIXTURES / "simplerl_zoo.parquet",
             "gsm8k": FIXTURES / "gsm8k.jsonl"}  # extra names are ignored
    mix = data.load_train_mix(local)
    # 4 DeepScaleR + 3 SimpleRL-Zoo rows with answers; "Compute binom(6,2)" is in both: 4 + 3 - 1 = 6.
    assert len(mix) == 6
    assert mix["data_source"] == ["deepscaler"] * 4 + ["simplerl_zoo"] * 2
    assert len(set(mix["prompt"])) == 6


def test_make_prompt_does_not_repeat_instruction():
    assert data.make_prompt("  What is 1+1?  ") == "What is 1+1?\n" + INSTRUCTION
    assert data.make_prompt("What is 1+1?\n" + INSTRUCTION) == "What is 1+1?\n" + INSTRUCTION


def test_answer_formats():
    assert data._gsm8k_answer("a\n#### 1,234") == "1234"
    assert data._gsm8k_answer("no marker") == ""  # -> the row is dropped, never scored
    assert data._olympiad_answer(["$x=1$", "$$2$$"]) == "x=1, 2"
    assert data._plain_answer(3.0) == "3" and data._plain_answer(None) == ""


@pytest.fixture
def offline(monkeypatch):
    """Make the hub unreachable at once, whatever the network (datasets reads the env at import)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True, raising=False)


def test_offline_error_names_dataset_hub_id_and_fix(offline, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path, raising=False)
    with pytest.raises(DataError) as info:
        data.load_benchmark("gsm8k")
    msg = str(info.value)
    assert "'gsm8k'" in msg and "openai/gsm8k" in msg and "--data gsm8k=/path/to/gsm8k.jsonl" in msg
    assert isinstance(info.value, ValueError)

    with pytest.raises(DataError, match="hkust-nlp/SimpleRL-Zoo-Data.*--data simplerl_zoo="):
        data.load_train_mix({"deepscaler": FIXTURES / "deepscaler.json"})


def test_local_file_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        data.load_benchmark("gsm8k", local=tmp_path / "missing.jsonl")
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text('{"problem": "1+1?", "solution": "2"}\n')
    with pytest.raises(DataError, match=r"field\(s\) \['question', 'answer'\] not found in any row.*openai/gsm8k"):
        data.load_benchmark("gsm8k", local=wrong)
    bad_suffix = tmp_path / "data.csv"
    bad_suffix.write_text("question,answer\n")
    with pytest.raises(DataError, match="unsupported suffix"):
        data.load_benchmark("gsm8k", local=bad_suffix)
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"question": "q", "answer": "no marker"}\n')
    with pytest.raises(DataError, match="no usable rows"):
        data.load_benchmark("gsm8k", local=empty)
    with pytest.raises(DataError, match="Did you mean 'gsm8k'"):
        data.load_benchmark("gsm8", local=FIXTURES / "gsm8k.jsonl")


def test_parse_data_overrides():
    out = data.parse_data_overrides(["gsm8k=/data/gsm8k.jsonl", " math500 = /d/m.parquet "])
    assert out == {"gsm8k": Path("/data/gsm8k.jsonl"), "math500": Path("/d/m.parquet")}
    assert data.parse_data_overrides(None) == {}
    with pytest.raises(DataError, match="name=/path"):
        data.parse_data_overrides(["gsm8k"])
    with pytest.raises(DataError, match="unknown dataset 'gsm9k'"):
        data.parse_data_overrides(["gsm9k=/x.jsonl"])
    with pytest.raises(DataError, match="must end in"):
        data.parse_data_overrides(["gsm8k=/x.csv"])


class _TemplateTokenizer:
    """A stand-in with a chat template: wraps the text like a chat turn, one id per character."""

    chat_template = "{{ messages }}"

    def apply_chat_template(self, messages, add_generation_prompt, tokenize, return_dict):
        assert add_generation_prompt and tokenize and not return_dict
        text = "<u>" + messages[0]["content"] + "<a>"
        return {"input_ids": [ord(c) for c in text]}  # a BatchEncoding-like mapping


class _PlainTokenizer:
    chat_template = None

    def __call__(self, text):
        return {"input_ids": [ord(c) for c in text]}


def test_chat_prompt_uses_template_when_present():
    assert data.chat_prompt(_TemplateTokenizer(), "hi") == [ord(c) for c in "<u>hi<a>"]
    assert data.chat_prompt(_PlainTokenizer(), "hi") == [ord("h"), ord("i")]


def test_chat_prompt_with_a_real_tokenizer():
    """A real transformers tokenizer with a chat template, built locally (no hub)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(["[UNK]", "<|user|>", "<|assistant|>", *"abcdefghijklmnopqrstuvwxyz ?"])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]",
                                  additional_special_tokens=["<|user|>", "<|assistant|>"])
    plain = data.chat_prompt(tok, "hi")
    assert plain == [vocab["h"], vocab["i"]]
    tok.chat_template = ("{% for m in messages %}<|user|>{{ m['content'] }}{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    assert data.chat_prompt(tok, "hi") == [vocab["<|user|>"], vocab["h"], vocab["i"], vocab["<|assistant|>"]]
