"""Datasets of the `paper` profile: the training mix and the six Table 1 benchmarks (paper §4, Table 1).

Every dataset is normalised to the columns of the tiny task (`fr3e.tasks.arithmetic.make_split`), all
strings: `id`, `prompt` (problem text + the paper's instruction), `answer` (gold final answer),
`solution` (worked solution when the dataset has one, else ""), `data_source`, `difficulty` ("" if unknown).

Where each dataset comes from lives in ONE table, :data:`DATASETS`. Any dataset can be replaced by a local
file in the hub dataset's own format (.jsonl, .json or .parquet): `load_benchmark("gsm8k", local=path)`,
`load_train_mix({"deepscaler": path})`, or on a command line `--data gsm8k=/path/to/test.jsonl` through
:func:`parse_data_overrides`. A dataset that cannot be fetched (offline machine, wrong id) raises one
:class:`DataError` naming the dataset, the hub id tried and the `--data` flag that fixes it.

The version we implement (deviations and choices):
- Hub ids are not given by the paper; they are the copies the community evaluates on (Qwen2.5-Math
  evaluation suite, SimpleRL-Zoo, DeepScaleR). Each spec's `note` says where the choice comes from.
- Prompt = problem + "\\n" + "Please reason step by step, and put your final answer within \\boxed{}."
  (the instruction quoted by the paper; the newline join follows SimpleRL-Zoo's data). The chat template,
  when the model has one, is applied at tokenisation time by :func:`chat_prompt`, not stored in `prompt`.
- GSM8K's gold answer is the text after `####` (commas removed: "1,000" -> "1000"); Gaokao 2023 English
  answers have their `$` delimiters stripped (as in the Qwen2.5-Math evaluation harness); OlympiadBench's
  `final_answer` list is joined with ", " (multi-answer problems) and its outer `$` stripped.
- Rows without a gold answer are dropped with a warning (SimpleRL-Zoo level 3-5 ships two such rows),
  never scored as wrong.
- The training mix is DeepScaleR followed by SimpleRL-Zoo MATH level 3-5; exact duplicate problems are
  kept once (our choice: the mix is a set of problems, and a duplicate would be drawn twice as often).
"""

from __future__ import annotations

import difflib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from fr3e.utils.errors import UserError

logger = logging.getLogger(__name__)

INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
"""The paper's prompt suffix (the authors' prompt template), appended to every problem."""

COLUMNS = ("id", "prompt", "answer", "solution", "data_source", "difficulty")
"""Columns of every normalised dataset, all strings; the same as the tiny task's splits."""

LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")
STEP_DELIMITER = "\n\n"
"""What separates reasoning steps in the paper's models' solutions (a blank line): the `newline` scorer's
boundary on the paper profile."""


class DataError(UserError, ValueError):
    """A dataset that cannot be loaded; the message names it, the hub id tried and how to pass a file."""


@dataclass(frozen=True)
class DatasetSpec:
    """Where one dataset lives on the Hugging Face hub and which fields hold what.

    Field names may be dotted to reach into a nested record (`extra_info.question`).
    """

    name: str  # our name, used by --data and data.eval_benchmarks
    hub_id: str
    config: str | None  # `name` argument of datasets.load_dataset
    split: str
    problem_field: str
    answer_field: str
    data_files: str | None = None  # a file inside the hub repo (datasets with several subsets as folders)
    id_field: str | None = None  # None: "<name>-<row index>"
    solution_field: str | None = None
    difficulty_field: str | None = None
    difficulty: str = ""  # used when difficulty_field is None
    answer_format: str = "plain"  # see _ANSWER_FORMATS
    rows: int | None = None  # published size, for the plan and for sanity messages
    note: str = ""  # where the choice of hub id comes from


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in [
        # ------------------------------------------------------------------ training mix (paper §4)
        DatasetSpec(
            "deepscaler", "agentica-org/DeepScaleR-Preview-Dataset", None, "train", "problem", "answer",
            solution_field="solution", rows=40315,
            note="the DeepScaleR-Preview data named by the paper; one file deepscaler.json"),
        DatasetSpec(
            "simplerl_zoo", "hkust-nlp/SimpleRL-Zoo-Data", None, "train", "extra_info.question",
            "extra_info.answer", data_files="simplelr_qwen_level3to5/train.parquet",
            difficulty="math-level3to5", rows=8523,
            note="SimpleRL-Zoo's MATH level 3-5 subset (the 'qwen' prompt variant; we re-build the prompt "
                 "from extra_info.question, so the variant does not matter)"),
        # ------------------------------------------------------------------ Table 1 benchmarks
        DatasetSpec(
            "aime24", "HuggingFaceH4/aime_2024", None, "train", "problem", "answer", id_field="id",
            solution_field="solution", difficulty="aime", rows=30,
            note="the 30 AIME 2024 I+II problems"),
        DatasetSpec(
            "gsm8k", "openai/gsm8k", "main", "test", "question", "answer", solution_field="answer",
            difficulty="grade-school", answer_format="gsm8k", rows=1319,
            note="GSM8K test split; gold answer after '####'"),
        DatasetSpec(
            "math500", "HuggingFaceH4/MATH-500", None, "test", "problem", "answer", id_field="unique_id",
            solution_field="solution", difficulty_field="level", rows=500,
            note="the MATH500 subset of 'Let's Verify Step by Step'"),
        DatasetSpec(
            "minerva_math", "math-ai/minervamath", None, "test", "question", "answer", rows=272,
            note="Minerva Math (OCWCourses), as in the Qwen2.5-Math evaluation suite"),
        DatasetSpec(
            "gaokao2023en", "MARIO-Math-Reasoning/Gaokao2023-Math-En", None, "train", "question", "answer",
            answer_format="strip_dollars", rows=385,
            note="Gaokao 2023 English (MARIO), the 'gaokao2023en' set of the Qwen2.5-Math evaluation suite"),
        DatasetSpec(
            "olympiadbench", "Hothan/OlympiadBench", "OE_TO_maths_en_COMP", "train", "question",
            "final_answer", id_field="id", solution_field="solution", difficulty="olympiad",
            answer_format="olympiad", rows=674,
            note="OlympiadBench open-ended, text-only, English maths competition subset"),
    ]
}

TRAIN_MIX = ("deepscaler", "simplerl_zoo")
"""The paper's training data (§4): DeepScaleR (~40k) + SimpleRL-Zoo MATH level 3-5 (~8k)."""

BENCHMARKS = ("aime24", "gsm8k", "math500", "minerva_math", "gaokao2023en", "olympiadbench")
"""The six Table 1 benchmarks, in the paper's column order (use these names in data.eval_benchmarks)."""

PAPER_TRAIN = "paper/train"
"""The value of `data.train` that selects the training mix."""


# ---------------------------------------------------------------------------------------- answers
def _gsm8k_answer(value: Any) -> str:
    text = str(value)
    if "####" not in text:
        return ""
    return text.split("####")[-1].strip().replace(",", "")


def _strip_dollars(value: Any) -> str:
    return str(value).replace("$", "").strip()


def _olympiad_answer(value: Any) -> str:
    items = value if isinstance(value, list | tuple) else [value]
    parts = [_strip_outer_dollars(str(v)) for v in items if v is not None and str(v).strip()]
    return ", ".join(parts)


def _strip_outer_dollars(text: str) -> str:
    text = text.strip()
    while len(text) >= 2 and text.startswith("$") and text.endswith("$"):
        text = text[1:-1].strip()
    return text


def _plain_answer(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


_ANSWER_FORMATS = {
    "plain": _plain_answer,
    "gsm8k": _gsm8k_answer,
    "strip_dollars": _strip_dollars,
    "olympiad": _olympiad_answer,
}


# ---------------------------------------------------------------------------------------- rows
def make_prompt(problem: str) -> str:
    """Problem text followed by the paper's instruction (once, even if the problem already ends with it)."""
    problem = problem.strip()
    if problem.endswith(INSTRUCTION):
        return problem
    return f"{problem}\n{INSTRUCTION}"


def _text(value: Any) -> str:
    """A field as text: None -> "", a list of strings (OlympiadBench solutions) -> lines."""
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return "\n".join(str(v) for v in value)
    return str(value)


def _get(record: Mapping[str, Any], dotted: str) -> Any:
    value: Any = record
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def normalize_rows(spec: DatasetSpec, records: Iterable[Mapping[str, Any]], where: str) -> list[dict[str, str]]:
    """Map raw records of `spec`'s dataset to :data:`COLUMNS`; rows without problem or gold answer are dropped.

    `where` names the source (hub id or file) in error messages.
    """
    records = list(records)
    if records:
        missing = [f for f in (spec.problem_field, spec.answer_field)
                   if all(_get(r, f) is None for r in records)]
        if missing:
            keys = sorted(records[0].keys())
            raise DataError(
                f"dataset {spec.name!r} from {where}: field(s) {missing} not found in any row "
                f"(its fields: {keys}). A local file must have the hub dataset's format "
                f"({spec.hub_id}: problem in {spec.problem_field!r}, answer in {spec.answer_field!r}).")
    to_answer = _ANSWER_FORMATS[spec.answer_format]
    rows, dropped = [], 0
    for index, record in enumerate(records):
        problem = _get(record, spec.problem_field)
        answer = to_answer(_get(record, spec.answer_field))
        if problem is None or not str(problem).strip() or not answer:
            dropped += 1
            continue
        row_id = _get(record, spec.id_field) if spec.id_field else None
        solution = _get(record, spec.solution_field) if spec.solution_field else None
        difficulty = _get(record, spec.difficulty_field) if spec.difficulty_field else spec.difficulty
        rows.append({
            "id": f"{spec.name}-{row_id if row_id is not None else index}",
            "prompt": make_prompt(str(problem)),
            "answer": answer,
            "solution": _text(solution),
            "data_source": spec.name,
            "difficulty": "" if difficulty is None else str(difficulty),
        })
    if dropped:
        logger.warning("%s (%s): dropped %d of %d rows without a problem or a gold answer",
                       spec.name, where, dropped, len(records))
    return rows


def to_dataset(rows: list[dict[str, str]]) -> datasets.Dataset:
    """A `datasets.Dataset` with the string columns of :data:`COLUMNS` (same schema as the tiny task)."""
    features = datasets.Features({c: datasets.Value("string") for c in COLUMNS})
    return datasets.Dataset.from_dict({c: [r[c] for r in rows] for c in COLUMNS}, features=features)


# ---------------------------------------------------------------------------------------- sources
def read_local(path: str | Path) -> list[dict[str, Any]]:
    """Records of a .jsonl, .json (a list of records, or {"data"|"train"|"test": [...]}) or .parquet file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"local data file {path} does not exist.")
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            with open(path, encoding="utf-8") as fh:
                return [json.loads(line) for line in fh if line.strip()]
        if suffix == ".json":
            obj = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(obj, dict):
                for key in ("data", "train", "test", "problems"):
                    if isinstance(obj.get(key), list):
                        return obj[key]
                raise DataError(f"{path}: a .json file must hold a list of records (or one under 'data').")
            return list(obj)
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
    except (json.JSONDecodeError, OSError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"could not read local data file {path}: {type(exc).__name__}: {exc}") from exc
    raise DataError(f"local data file {path}: unsupported suffix {suffix!r}; use one of {list(LOCAL_SUFFIXES)}.")


def _hub_records(spec: DatasetSpec) -> list[dict[str, Any]]:
    kwargs: dict[str, Any] = {"split": spec.split}
    if spec.data_files:
        kwargs["data_files"] = spec.data_files
    from fr3e.data.hub import hub_reachable, hub_unreachable_reason

    online = hub_reachable()  # one short probe; offline, datasets reads its cache at once instead of retrying
    try:
        ds = datasets.load_dataset(spec.hub_id, spec.config, **kwargs)
    except Exception as exc:  # offline, missing, gated, renamed: one clear message for all
        raise DataError(_fetch_error(spec, exc, None if online else hub_unreachable_reason())) from exc
    return list(ds)


def _fetch_error(spec: DatasetSpec, exc: BaseException, offline: str | None = None) -> str:
    """One message for a dataset the hub did not give: `offline` says why the hub was not asked (then the
    dataset was not in the local cache either), else the library's own error is quoted."""
    what = spec.hub_id + (f" (config {spec.config!r})" if spec.config else "")
    what += f", file {spec.data_files!r}" if spec.data_files else ""
    why = (f"it is not in the local cache and {offline}" if offline
           else f"got {type(exc).__name__}: {' '.join(str(exc).split())}")
    return (
        f"could not load dataset {spec.name!r} from the Hugging Face hub: tried {what}, split {spec.split!r}; "
        f"{why}. If this machine is offline or the id moved, download the data "
        f"elsewhere and pass the file: --data {spec.name}=/path/to/{spec.name}.jsonl (or "
        f"load_benchmark({spec.name!r}, local=...)); .jsonl, .json and .parquet files in the hub dataset's "
        f"format are accepted (problem in {spec.problem_field!r}, answer in {spec.answer_field!r}).")


def _spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        close = difflib.get_close_matches(name, list(DATASETS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise DataError(f"unknown dataset {name!r}.{hint} Known datasets: {', '.join(DATASETS)}.")
    return DATASETS[name]


def load_rows(name: str, local: str | Path | None = None) -> list[dict[str, str]]:
    """Normalised rows of dataset `name`, from `local` when given, else from the hub."""
    spec = _spec(name)
    if local is not None:
        rows = normalize_rows(spec, read_local(local), str(local))
        source = str(local)
    else:
        rows = normalize_rows(spec, _hub_records(spec), spec.hub_id)
        source = spec.hub_id
    if not rows:
        raise DataError(f"dataset {name!r} from {source} has no usable rows (problem + gold answer).")
    logger.info("loaded %s: %d problems from %s", name, len(rows), source)
    return rows


def load_benchmark(name: str, local: str | Path | None = None, limit: int = 0) -> datasets.Dataset:
    """One Table 1 benchmark (any name in :data:`DATASETS`), normalised; `limit` > 0 keeps the first rows."""
    rows = load_rows(name, local)
    if limit > 0:
        rows = rows[:limit]
    return to_dataset(rows)


def load_train_mix(local: Mapping[str, str | Path] | None = None, names: Iterable[str] = TRAIN_MIX
                   ) -> datasets.Dataset:
    """The paper's training data: DeepScaleR then SimpleRL-Zoo MATH L3-5, exact duplicate problems once.

    `local` maps dataset names to files replacing the hub copies (other names in it are ignored, so one
    `--data` dict can serve both the training mix and the benchmarks).
    """
    local = dict(local or {})
    rows, seen, duplicates = [], set(), 0
    for name in names:
        for row in load_rows(name, local.get(name)):
            key = row["prompt"]
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            rows.append(row)
    if duplicates:
        logger.info("training mix: %d duplicate problems kept once", duplicates)
    return to_dataset(rows)


def parse_data_overrides(items: Iterable[str] | None) -> dict[str, Path]:
    """`["gsm8k=/data/gsm8k.jsonl", ...]` (repeated `--data` flags) -> {"gsm8k": Path(...)}; names checked."""
    out: dict[str, Path] = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not name or not path:
            raise DataError(f"--data {item!r} must look like name=/path/to/file.jsonl, e.g. "
                            f"--data gsm8k=/data/gsm8k_test.jsonl (names: {', '.join(DATASETS)}).")
        _spec(name)
        if Path(path).suffix.lower() not in LOCAL_SUFFIXES:
            raise DataError(f"--data {item!r}: the file must end in one of {list(LOCAL_SUFFIXES)}.")
        out[name] = Path(path)
    return out


# ---------------------------------------------------------------------------------------- tokenisation
def chat_prompt(tokenizer, prompt_text: str) -> list[int]:
    """Token ids of one prompt: the model's chat template (user turn + generation prompt) when the tokenizer
    has one, else the raw text tokenised with the tokenizer's own special-token convention."""
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt_text}], add_generation_prompt=True, tokenize=True,
            return_dict=False)
        if isinstance(ids, Mapping):  # BatchEncoding on transformers versions that ignore return_dict
            ids = ids["input_ids"]
        if ids and isinstance(ids[0], list):
            ids = ids[0]
        return [int(i) for i in ids]
    return [int(i) for i in tokenizer(prompt_text)["input_ids"]]


def encode_prompt(tokenizer, prompt_text: str) -> list[int]:
    """The one prompt builder of training and evaluation (so a policy is scored on the prompts it trained on).

    The chat template when the tokenizer has one (paper profile: Qwen's `<|im_start|>user ... <|im_end|>`),
    else the raw text (the tiny world's character tokenizer has no template).
    """
    return chat_prompt(tokenizer, prompt_text)
