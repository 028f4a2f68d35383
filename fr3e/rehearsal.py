"""CPU dress rehearsal of `make reproduce-table1 PROFILE=paper`: the paper path with only sizes changed.

    python -m fr3e.rehearsal [--quick] [--dir runs/rehearsal] [--fresh]       (make rehearse-table1)

What runs, in order, each step a subprocess with a hard timeout and a progress line:

1. **Fixture model** (`build_fixture_model`, cached under `runs/cache/rehearsal/<hash>/`): a random-initialised
   Qwen2-architecture decoder (hidden 64, 2 layers, 4 heads, 2 KV heads) with a byte-level BPE tokenizer
   trained here on the fixture texts (`tests/fixtures/data/`), the special tokens `<|endoftext|>`,
   `<|im_start|>`, `<|im_end|>` and a Qwen2.5-style chat template; a short SFT warm start on chat-formatted
   fixture problems (target "The answer is \\boxed{a}.<|im_end|>") stops once sampled accuracy at T = 1 on
   the training prompts is inside `[accuracy_low, accuracy_high]`, so that rollout groups are mixed.
   EOS layout of the Qwen2.5 *base* models (issue 10, defect 10): `config.json`, `generation_config.json` and
   the tokenizer name `<|endoftext|>` only, while a chat turn ends with `<|im_end|>`.
2. **Hub id** (`install_hub_cache`, `verify_hub_loading`): the model is placed in a Hugging Face hub cache
   (`<dir>/hf/hub/models--<org>--<name>/{refs/main, snapshots/<commit>/}`) and every later step runs with
   `HF_HOME=<dir>/hf HF_HUB_OFFLINE=1`, so `AutoModelForCausalLM.from_pretrained("<org>/<name>")` resolves it
   exactly as `fr3e.trainer.load_policy` resolves `Qwen/Qwen2.5-7B` on a GPU node.
3. **Training runs** with `accelerate launch` on 2 gloo ranks (`reproduce/accelerate/*-cpu-2proc.yaml`) and
   the Table 1 recipes `reproduce/configs/table1/qwen2.5-7b-{fr3e,grpo_pp}.yaml`, overriding sizes only
   (:func:`size_overrides`): FR3E under FSDP2, killed with SIGKILL (launcher and every rank) once
   `metrics.jsonl` has 2 steps and a checkpoint exists, and relaunched (it must resume and finish); GRPO++ under DDP; FR3E with `rehearsal_zero_reward_rank=1`. The
   Table 1 runs are launched with the command `fr3e.results.ensure_runs` builds (plus `--data name=path` for
   the fixture files), in the directories it expects, so the notebook reuses them.
4. **Base-model rows**: `fr3e.results.base_evals` on the fixture hub id with the recipe's evaluation settings.
5. **Notebook** `notebooks/02_table1.ipynb` through `fr3e.reproduce.run_notebook` with the paper profile's
   parameters (`fr3e.reproduce.full_parameters("paper")`), pointed at the rehearsal directory.

`--quick` (the test in `make test`): one FSDP FR3E run of 4 steps with the zero-reward rank, the kill and
the resume, evaluation on 2 benchmarks at n = 2, no base rows, no notebook.

A step that fails, hangs (timeout) or silently does something else (one rank instead of two, DDP instead of
FSDP) is reported with its log excerpt; later steps that need its output are skipped. Exit status 1 if
any step failed. The record of every step goes to `<dir>/rehearsal.json`, its log to `<dir>/logs/`.

What it does not rehearse: vLLM (`rollout.engine=hf` here), CUDA, bf16 and real model sizes.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fr3e.io import atomic_write_json, atomic_write_text, read_jsonl

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURE_DATA = REPO_ROOT / "tests" / "fixtures" / "data"
ACCELERATE_DIR = REPO_ROOT / "reproduce" / "accelerate"
TABLE1_DIR = REPO_ROOT / "reproduce" / "configs" / "table1"
DEFAULT_DIR = REPO_ROOT / "runs" / "rehearsal"
DEFAULT_CACHE = REPO_ROOT / "runs" / "cache" / "rehearsal"

HUB_ID = "fr3e-rehearsal/qwen2-tiny"
"""Hub id of the fixture model inside the rehearsal's own hub cache (never on the real hub)."""
TABLE1_MODEL = "Qwen/Qwen2.5-7B"
"""The Table 1 model whose recipes the rehearsal runs (its `model.base` is overridden by :data:`HUB_ID`)."""

ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END)  # ids 0, 1, 2 (Qwen2.5: 151643, 151644, 151645)
QWEN_PRETOKENIZE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                    r"|\s*[\r\n]+|\s+(?!\S)|\s+")
"""The split regex of Qwen2's tokenizer.json. With it (plus NFC and byte-level), `AutoTokenizer` on a qwen2
directory, which rebuilds a `Qwen2Tokenizer`, encodes exactly as our tokenizer.json does (DESIGN.md trap:
with another pre-tokenizer the rebuilt tokenizer drops "\\n")."""
CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}"
    "{%- if not (message['role'] == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
"""Qwen2.5's chat template without the tool branches (same turn markers and default system turn)."""
BENCHMARK_FILES = {"aime24": "aime24.jsonl", "gsm8k": "gsm8k.jsonl", "math500": "math500.jsonl",
                   "minerva_math": "minerva_math.jsonl", "gaokao2023en": "gaokao2023en.jsonl",
                   "olympiadbench": "olympiadbench.jsonl"}
TRAIN_FILES = {"deepscaler": "deepscaler.json", "simplerl_zoo": "simplerl_zoo.parquet"}
BUILDER_VERSION = 2
"""Bump when the builder changes what it writes (part of the cache key)."""


class RehearsalError(RuntimeError):
    """A rehearsal step failed; the message names the step and what it found."""


# ============================================================================================ fixture model
@dataclass(frozen=True)
class FixtureModelConfig:
    """Size and warm start of the fixture model. Every field is part of the cache key."""

    vocab_size: int = 512  # BPE vocabulary incl. the 3 special tokens (our choice: fixture texts are ~10 kB)
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2  # grouped-query attention as in Qwen2.5 (4 KV heads at 7B)
    intermediate_size: int = 128
    max_position_embeddings: int = 1024
    sft_lr: float = 3e-3
    sft_max_steps: int = 400
    sft_check_every: int = 10  # steps between accuracy checks
    accuracy_low: float = 0.3  # stop the warm start once sampled accuracy on the training prompts is in
    accuracy_high: float = 0.8  # [low, high] (mixed groups: RL has signal)
    accuracy_samples: int = 8  # samples per training prompt at T = 1 for the check
    max_new_tokens: int = 24
    seed: int = 0


def fixture_texts(data_dir: str | Path = FIXTURE_DATA) -> list[str]:
    """Raw text of every fixture data file (the tokenizer's training corpus), in name order."""
    import pyarrow.parquet as pq

    out = []
    for path in sorted(Path(data_dir).iterdir()):
        if path.suffix in (".json", ".jsonl", ".md"):
            out.append(path.read_text(encoding="utf-8"))
        elif path.suffix == ".parquet":
            out.append(json.dumps(pq.read_table(path).to_pylist(), ensure_ascii=False))
    return out


def train_tokenizer(texts: Sequence[str], vocab_size: int = 512):
    """A byte-level BPE tokenizer in Qwen2's layout, trained on `texts`.

    Special tokens `<|endoftext|>` (eos and pad, as Qwen2.5 base), `<|im_start|>`, `<|im_end|>`; Qwen2.5's chat
    template; no BOS. Returns a `transformers.PreTrainedTokenizerFast`.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=ENDOFTEXT, pad_token=ENDOFTEXT,
                                   additional_special_tokens=[IM_START, IM_END], clean_up_tokenization_spaces=False,
                                   model_max_length=32768)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def sft_examples(data_dir: str | Path = FIXTURE_DATA) -> tuple[list[dict], list[dict]]:
    """(train, benchmark) rows {prompt, answer} of the fixture files, read through `fr3e.data`'s loaders.

    The warm start trains on both (the fixture model should score above zero on the benchmarks too, so the
    evaluation numbers of the rehearsal move); the accuracy check uses the training prompts only.
    """
    from fr3e.data import load_benchmark, load_train_mix

    data_dir = Path(data_dir)
    train = load_train_mix({k: data_dir / v for k, v in TRAIN_FILES.items()})
    bench = [r for name, f in BENCHMARK_FILES.items() for r in load_benchmark(name, local=data_dir / f)]
    return ([{"prompt": r["prompt"], "answer": r["answer"]} for r in train],
            [{"prompt": r["prompt"], "answer": r["answer"]} for r in bench])


def sft_target(answer: str) -> str:
    """The assistant turn the warm start teaches (the chat turn ends with <|im_end|>, not the tokenizer's EOS)."""
    return f"The answer is \\boxed{{{answer}}}.{IM_END}"


def sampled_accuracy(model, tokenizer, rows: Sequence[dict], samples: int, max_new_tokens: int, seed: int) -> float:
    """Mean reward of `samples` samples at T = 1 per row, stopping at <|im_end|> or <|endoftext|>."""
    import torch

    from fr3e.data import chat_prompt
    from fr3e.rewards import reward

    stop = [tokenizer.convert_tokens_to_ids(IM_END), tokenizer.convert_tokens_to_ids(ENDOFTEXT)]
    torch.manual_seed(seed)
    scores = []
    model.eval()
    with torch.no_grad():
        for row in rows:
            ids = torch.tensor([chat_prompt(tokenizer, row["prompt"])])
            out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0, top_p=1.0,
                                 top_k=0, max_new_tokens=max_new_tokens, num_return_sequences=samples,
                                 eos_token_id=stop, pad_token_id=stop[1])
            for seq in out[:, ids.shape[1]:]:
                scores.append(reward(tokenizer.decode(seq, skip_special_tokens=True), row["answer"]))
    model.train()
    return float(sum(scores) / max(len(scores), 1))


def warm_start(model, tokenizer, train_rows: Sequence[dict], extra_rows: Sequence[dict],
               config: FixtureModelConfig) -> list[dict]:
    """Full-batch SFT on the chat-formatted rows until sampled accuracy on `train_rows` is in range.

    Loss on the assistant tokens only. Returns the history [{step, loss, accuracy}] of the checks.
    Raises RehearsalError if accuracy never enters [accuracy_low, accuracy_high] within sft_max_steps.
    """
    import torch

    from fr3e.data import chat_prompt

    rows = list(train_rows) + list(extra_rows)
    seqs, starts = [], []
    for r in rows:
        p = chat_prompt(tokenizer, r["prompt"])
        t = tokenizer(sft_target(r["answer"]), add_special_tokens=False)["input_ids"]
        seqs.append(p + t)
        starts.append(len(p))
    width = max(len(s) for s in seqs)
    pad = tokenizer.pad_token_id
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)  # (B, L)
    labels = torch.full((len(seqs), width), -100, dtype=torch.long)  # (B, L)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (s, st) in enumerate(zip(seqs, starts)):
        ids[i, : len(s)] = torch.tensor(s)
        labels[i, st: len(s)] = torch.tensor(s[st:])
        mask[i, : len(s)] = 1
    opt = torch.optim.AdamW(model.parameters(), lr=config.sft_lr, weight_decay=0.0)
    history = []
    model.train()
    for step in range(1, config.sft_max_steps + 1):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % config.sft_check_every == 0:
            acc = sampled_accuracy(model, tokenizer, train_rows, config.accuracy_samples, config.max_new_tokens,
                                   seed=config.seed + step)
            history.append({"step": step, "loss": round(loss.item(), 4), "accuracy": acc})
            logger.info("fixture warm start: step %d loss %.3f sampled accuracy %.2f", step, loss.item(), acc)
            if acc >= config.accuracy_low:
                if acc > config.accuracy_high:
                    raise RehearsalError(
                        f"fixture warm start jumped from below {config.accuracy_low} to {acc:.2f} (> "
                        f"{config.accuracy_high}) at step {step}; lower FixtureModelConfig.sft_check_every or sft_lr.")
                return history
    raise RehearsalError(f"fixture warm start: sampled accuracy never reached {config.accuracy_low} in "
                         f"{config.sft_max_steps} steps (history {history}); raise sft_max_steps or sft_lr.")


def fixture_key(config: FixtureModelConfig, data_dir: str | Path = FIXTURE_DATA) -> str:
    """Cache key: the settings, the fixture texts and the builder version (16 hex digits)."""
    payload = json.dumps({"config": dataclasses.asdict(config), "texts": fixture_texts(data_dir),
                          "version": BUILDER_VERSION}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def build_fixture_model(config: FixtureModelConfig = FixtureModelConfig(), cache_dir: str | Path = DEFAULT_CACHE,
                        data_dir: str | Path = FIXTURE_DATA) -> Path:
    """The fixture model directory (hub layout: config, generation config, weights, tokenizer), built once.

    Cached as `<cache_dir>/<fixture_key>/model/`; `rehearsal.json` beside the weights records the settings and
    the warm-start history.
    """
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    key = fixture_key(config, data_dir)
    final = Path(cache_dir) / key / "model"
    if (final / "rehearsal.json").exists():
        return final
    start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tokenizer = train_tokenizer(fixture_texts(data_dir), config.vocab_size)
        eot = tokenizer.convert_tokens_to_ids(ENDOFTEXT)
        torch.manual_seed(config.seed)
        model_config = Qwen2Config(
            vocab_size=len(tokenizer), hidden_size=config.hidden_size, num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads, num_key_value_heads=config.num_kv_heads,
            intermediate_size=config.intermediate_size, max_position_embeddings=config.max_position_embeddings,
            tie_word_embeddings=True, bos_token_id=eot, eos_token_id=eot, rope_theta=10000.0)
        model = Qwen2ForCausalLM(model_config)
        train_rows, bench_rows = sft_examples(data_dir)
        history = warm_start(model, tokenizer, train_rows, bench_rows, config)
        bench_accuracy = sampled_accuracy(model, tokenizer, bench_rows, config.accuracy_samples, config.max_new_tokens,
                                          seed=config.seed)
    finally:
        torch.set_num_threads(threads)
    tmp = Path(cache_dir) / key / f".tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.generation_config = GenerationConfig(bos_token_id=eot, eos_token_id=eot, max_new_tokens=2048)  # base layout
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tok_cfg_path = tmp / "tokenizer_config.json"
    tok_cfg = json.loads(tok_cfg_path.read_text())
    tok_cfg.update({"tokenizer_class": "Qwen2Tokenizer", "bos_token": None, "add_bos_token": False,
                    "chat_template": CHAT_TEMPLATE})
    atomic_write_json(tok_cfg_path, tok_cfg)
    atomic_write_json(tmp / "rehearsal.json", {
        "hub_id": HUB_ID, "key": key, "settings": dataclasses.asdict(config), "warm_start": history,
        "benchmark_accuracy": bench_accuracy,
        "seconds": round(time.perf_counter() - start, 1),
        "eos": {"tokenizer": ENDOFTEXT, "generation_config": [ENDOFTEXT], "end_of_turn": IM_END,
                "note": "Qwen2.5 base layout: generation_config names <|endoftext|> only (issue 10, defect 10)"}})
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final


# ================================================================================================ hub cache
def hub_repo_dir(hf_home: str | Path, hub_id: str = HUB_ID) -> Path:
    """`<HF_HOME>/hub/models--<org>--<name>` (huggingface_hub's cache layout)."""
    return Path(hf_home) / "hub" / ("models--" + hub_id.replace("/", "--"))


def install_hub_cache(model_dir: str | Path, hf_home: str | Path, hub_id: str = HUB_ID) -> Path:
    """Place `model_dir`'s files in a hub cache as revision main of `hub_id`; returns the snapshot directory.

    The commit hash is the sha1 of the files' contents, so the same model always gets the same snapshot.
    """
    model_dir = Path(model_dir)
    files = sorted(p for p in model_dir.iterdir() if p.is_file())
    digest = hashlib.sha1()
    for p in files:
        digest.update(p.name.encode())
        digest.update(p.read_bytes())
    commit = digest.hexdigest()
    repo = hub_repo_dir(hf_home, hub_id)
    snapshot = repo / "snapshots" / commit
    if not snapshot.is_dir():
        tmp = repo / "snapshots" / f".tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for p in files:
            shutil.copy2(p, tmp / p.name)
        tmp.rename(snapshot)
    atomic_write_text(repo / "refs" / "main", commit)
    return snapshot


def hub_env(hf_home: str | Path, base: dict | None = None) -> dict:
    """Environment of every rehearsal subprocess: the private hub cache, offline, one thread per process."""
    env = dict(os.environ if base is None else base)
    env.update({"HF_HOME": str(Path(hf_home).resolve()), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1", "HF_HUB_DISABLE_TELEMETRY": "1"})
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE", "ACCELERATE_CONFIG"):
        env.pop(key, None)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


_VERIFY = r"""
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
hub_id = sys.argv[1]
tok = AutoTokenizer.from_pretrained(hub_id)
model = AutoModelForCausalLM.from_pretrained(hub_id, dtype=torch.float32)
text = "Line one\n\nLine two: $x^2$ \\boxed{13}\n"
ids = tok(text)["input_ids"]
chat = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
gen = model.generation_config.eos_token_id
sys.stdout.write(json.dumps({
    "resolved": model.name_or_path, "tokenizer_class": type(tok).__name__, "model_class": type(model).__name__,
    "model_type": model.config.model_type, "parameters": sum(p.numel() for p in model.parameters()),
    "round_trip": tok.decode(ids) == text, "eos_token": tok.eos_token, "eos_token_id": tok.eos_token_id,
    "im_end_id": tok.convert_tokens_to_ids("<|im_end|>"),
    "generation_eos": gen if isinstance(gen, list) else [gen], "chat": chat}) + "\n")
"""


def verify_hub_loading(hf_home: str | Path, hub_id: str = HUB_ID, timeout: float = 120) -> dict:
    """Load `hub_id` by name in a fresh process with HF_HOME=hf_home offline; return what resolved.

    Raises RehearsalError (with the subprocess's error) if it does not load or does not round-trip text.
    """
    proc = subprocess.run([sys.executable, "-c", _VERIFY, hub_id], env=hub_env(hf_home), capture_output=True,
                          text=True, timeout=timeout, cwd=REPO_ROOT)
    if proc.returncode != 0:
        raise RehearsalError(f"loading {hub_id} by hub id from {hf_home} failed:\n{failure_excerpt(proc.stderr)}")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    if not info["round_trip"]:
        raise RehearsalError(f"AutoTokenizer.from_pretrained({hub_id!r}) does not round-trip text with newlines "
                             f"({info['tokenizer_class']}); the tokenizer.json pre-tokenizer must match Qwen2's.")
    return info


# ================================================================================================ recipe
@dataclass(frozen=True)
class Sizes:
    """The only recipe values the rehearsal changes (besides `model.base`, `rollout.engine` and the data files)."""

    steps: int = 6
    prompts_per_step: int = 2
    max_prompt_tokens: int = 256
    max_response_tokens: int = 24
    eval_problems: int = 0  # 0 = all (3 per fixture benchmark)
    eval_n: int = 4
    eval_every: int = 3
    checkpoint_every: int = 2
    micro_batch_size: int = 16
    distributed_timeout_s: int = 20
    eval_benchmarks: tuple[str, ...] = ()  # empty: the recipe's six


QUICK_SIZES = Sizes(steps=4, eval_n=2, eval_every=0, checkpoint_every=1, eval_benchmarks=("gsm8k", "math500"))
FULL_SIZES = Sizes()


def data_files(data_dir: str | Path = FIXTURE_DATA) -> dict[str, str]:
    """name -> fixture file for the training mix and the six benchmarks (absolute paths)."""
    data_dir = Path(data_dir).resolve()
    return {name: str(data_dir / f) for name, f in {**TRAIN_FILES, **BENCHMARK_FILES}.items()}


def size_overrides(sizes: Sizes, hub_id: str = HUB_ID) -> list[str]:
    """`--set` overrides of a Table 1 recipe: sizes, the fixture model, the HF engine, fp32.

    The fixture data files go in as `data.local_files.NAME=path` overrides, so the same list reaches the
    training runs, `base_evals` and the notebook (whose only route is its `overrides` parameter).
    """
    out = [f"model.base={hub_id}", "model.dtype=float32", "rollout.engine=hf",
           f"data.prompts_per_step={sizes.prompts_per_step}", f"data.max_prompt_tokens={sizes.max_prompt_tokens}",
           f"data.max_response_tokens={sizes.max_response_tokens}", f"optim.micro_batch_size={sizes.micro_batch_size}",
           f"checkpoint_every={sizes.checkpoint_every}", f"eval_every={sizes.eval_every}",
           f"distributed_timeout_s={sizes.distributed_timeout_s}"]
    if sizes.eval_benchmarks:
        out.append("data.eval_benchmarks=[" + ",".join(sizes.eval_benchmarks) + "]")
    return out + [f"data.local_files.{name}={path}" for name, path in sorted(data_files().items())]


def table1_run(method: str, sizes: Sizes, runs_root: Path, overrides: Sequence[str], seed: int = 0):
    """(run_dir, overrides) of a Table 1 run exactly as `fr3e.results.ensure_runs` names and configures it."""
    from fr3e.results import run_name

    extra = list(overrides) + [f"data.eval_n={sizes.eval_n}", f"data.eval_problems={sizes.eval_problems}"]
    name = run_name(method, TABLE1_MODEL, seed, sizes.steps, extra)
    ov = [f"model.base={TABLE1_MODEL}", f"seed={seed}", f"steps={sizes.steps}"] + extra + [f"name={name}"]
    return runs_root / "paper" / name, ov


def recipe(method: str) -> Path:
    return TABLE1_DIR / f"qwen2.5-7b-{method}.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_config(kind: str, out_dir: Path) -> Path:
    """A copy of `reproduce/accelerate/<kind>-cpu-2proc.yaml` with a free rendezvous port (others may use 29500)."""
    import yaml

    src = ACCELERATE_DIR / f"{kind}-cpu-2proc.yaml"
    data = yaml.safe_load(src.read_text())
    data["main_process_port"] = free_port()
    out = out_dir / f"{kind}-cpu-2proc.yaml"
    atomic_write_text(out, f"# {src.relative_to(REPO_ROOT)} with a free port\n" + yaml.safe_dump(data, sort_keys=False))
    return out


# ================================================================================================ processes
_TRACEBACK = "Traceback (most recent call last)"
_CHAINED = ("The above exception", "During handling")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def failure_excerpt(text: str, max_lines: int = 30) -> str:
    """The most telling part of a failed process's output: the first traceback (rank prefixes kept, chained
    exceptions followed to the last one), a papermill cell error, else the lines that mention an error, else
    the tail."""
    lines = [_ANSI.sub("", line) for line in text.splitlines()]
    cells = [i for i, line in enumerate(lines) if line.startswith("Exception encountered at")]  # papermill
    if cells:
        block = [line for line in lines[cells[-1]:] if line.strip() and not set(line.strip()) <= {"-"}]
        return "\n".join(block[:1] + block[1:][-(max_lines - 1):])
    starts = [i for i, line in enumerate(lines) if _TRACEBACK in line]
    if starts:
        prefix = lines[starts[0]].split(_TRACEBACK)[0]
        own = [line for line in lines[starts[0]:] if line.startswith(prefix)]  # this rank's lines only
        end = len(own) - 1
        for i, line in enumerate(own[1:], start=1):
            body = line[len(prefix):]
            if not body.strip() or body.startswith((" ", "\t", _TRACEBACK)) or body.startswith(_CHAINED):
                continue
            following = [x[len(prefix):] for x in own[i + 1:] if x[len(prefix):].strip()]
            if not following or not following[0].startswith(_CHAINED):
                end = i  # the exception line that ends the (chained) traceback
                break
        return "\n".join(own[: end + 1][-max_lines:])
    errors = [line for line in lines if re.search(r"error|timed out|timeout|Killed", line, re.IGNORECASE)]
    return "\n".join((errors or lines)[-max_lines:])


@dataclass
class Step:
    """One rehearsal step's record (rehearsal.json)."""

    name: str
    status: str = "pending"  # ok | failed | timeout | skipped
    seconds: float = 0.0
    detail: str = ""
    log: str = ""
    checks: dict = field(default_factory=dict)


class Process:
    """A subprocess in its own process group, logging to a file, with a hard deadline."""

    def __init__(self, cmd: Sequence[str], log: Path, env: dict, cwd: Path = REPO_ROOT):
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log = log
        self._fh = open(log, "ab")
        self._fh.write(f"\n$ {' '.join(cmd)}\n".encode())
        self._fh.flush()
        self.proc = subprocess.Popen(list(cmd), stdout=self._fh, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                     start_new_session=True)

    def poll(self) -> int | None:
        return self.proc.poll()

    def kill(self) -> None:
        """SIGKILL the launcher and every process below it, as a node's job killer would.

        Killing the launcher's process group is not enough: torchrun starts each rank in a session of its own,
        so the ranks would outlive it and finish the run. The tree is frozen first so no child escapes.
        """
        import psutil

        try:
            root = psutil.Process(self.proc.pid)
            tree = [root, *root.children(recursive=True)]
            for p in tree:
                with _gone():
                    p.suspend()
            tree += [c for c in root.children(recursive=True) if c not in tree]
            for p in tree:
                with _gone():
                    p.kill()
        except psutil.NoSuchProcess:
            pass
        self.proc.wait()
        self._fh.close()

    def wait(self, deadline: float) -> int | None:
        """Exit status, or None (after killing the group) if the deadline passed."""
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                self._kill_leftovers()
                self._fh.close()
                return code
            time.sleep(0.2)
        self.kill()
        return None

    def _kill_leftovers(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # helpers left in the launcher's group
        except (ProcessLookupError, PermissionError):
            pass

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def weight_change(base_dir: Path, model_dir: Path) -> float | None:
    """Largest |trained - base| over the tensors two safetensors model directories share (None if unreadable)."""
    from safetensors.torch import load_file

    try:
        base = {k: v for f in sorted(base_dir.glob("*.safetensors")) for k, v in load_file(f).items()}
        new = {k: v for f in sorted(model_dir.glob("*.safetensors")) for k, v in load_file(f).items()}
    except (OSError, ValueError):
        return None
    shared = [k for k in base if k in new and base[k].shape == new[k].shape]
    if not shared:
        return None
    return max(float((new[k].float() - base[k].float()).abs().max()) for k in shared)


@contextlib.contextmanager
def _gone():
    """Ignore a process that exited meanwhile."""
    import psutil

    try:
        yield
    except psutil.NoSuchProcess:
        pass


def metrics_steps(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return len(read_jsonl(path)) if path.exists() else 0


# ================================================================================================ rehearsal
class Rehearsal:
    """Runs the steps in order, records each in `<dir>/rehearsal.json`, prints one progress line per step."""

    def __init__(self, out_dir: Path, quick: bool, timeout: float, cache_dir: Path, stream=sys.stdout):
        self.dir = out_dir.resolve()
        self.quick = quick
        self.timeout = timeout
        self.cache_dir = cache_dir.resolve()
        self.stream = stream
        self.sizes = QUICK_SIZES if quick else FULL_SIZES
        self.hf_home = self.dir / "hf"
        self.runs_root = self.dir / "runs"
        self.logs = self.dir / "logs"
        self.steps: list[Step] = []
        self.start = time.perf_counter()
        self.env = hub_env(self.hf_home)
        self.local = data_files()
        self.benchmark_accuracy = 0.0
        self.fixture_snapshot: Path | None = None

    # ---------------------------------------------------------------------------------------- plumbing
    def say(self, text: str) -> None:
        self.stream.write(f"[rehearsal {time.perf_counter() - self.start:6.1f} s] {text}\n")
        self.stream.flush()

    def record(self, step: Step) -> Step:
        self.steps.append(step)
        mark = {"ok": "ok", "skipped": "SKIPPED"}.get(step.status, step.status.upper())
        self.say(f"{step.name}: {mark} ({step.seconds:.1f} s){' - ' + step.detail.splitlines()[0] if step.detail else ''}")
        if step.status in ("failed", "timeout") and step.detail.count("\n"):
            rest = step.detail.split("\n", 1)[1]
            self.stream.write("    " + rest.replace("\n", "\n    ") + "\n")
        atomic_write_json(self.dir / "rehearsal.json", self.summary())
        return step

    def summary(self) -> dict:
        return {"quick": self.quick, "dir": str(self.dir), "sizes": dataclasses.asdict(self.sizes),
                "seconds": round(time.perf_counter() - self.start, 1),
                "ok": all(s.status == "ok" for s in self.steps),
                "steps": [dataclasses.asdict(s) for s in self.steps]}

    def skipped(self, name: str, why: str) -> Step:
        return self.record(Step(name, "skipped", detail=why))

    def launch(self, name: str, cmd: Sequence[str]) -> Process:
        return Process(cmd, self.logs / f"{name}.log", self.env)

    def finish(self, step: Step, proc: Process, code: int | None, t0: float, what: str) -> bool:
        step.seconds = round(time.perf_counter() - t0, 1)
        step.log = str(proc.log)
        if code is None:
            step.status = "timeout"
            step.detail = (f"{what} did not finish within {self.timeout:.0f} s (killed); last output:\n"
                           + failure_excerpt(proc.output()))
            return False
        if code != 0:
            step.status = "failed"
            step.detail = f"{what} exited with status {code}:\n" + failure_excerpt(proc.output())
            return False
        return True

    # ---------------------------------------------------------------------------------------- steps
    def fixture(self) -> Step:
        step, t0 = Step("fixture model (hub id)"), time.perf_counter()
        log = self.logs / "fixture.log"
        cmd = [sys.executable, "-m", "fr3e.rehearsal", "build-fixture", "--cache-dir", str(self.cache_dir),
               "--hf-home", str(self.hf_home)]
        proc = self.launch("fixture", cmd)
        code = proc.wait(time.monotonic() + self.timeout)
        if not self.finish(step, proc, code, t0, "building and loading the fixture model"):
            return self.record(step)
        info = json.loads(log.read_text().strip().splitlines()[-1])
        step.checks = info
        problems = []
        if info["generation_eos"] != [info["eos_token_id"]] or info["im_end_id"] == info["eos_token_id"]:
            problems.append("EOS layout is not Qwen2.5 base's (generation_config eos = <|endoftext|> only)")
        if "<|im_start|>user" not in info["chat"] or not info["round_trip"]:
            problems.append("chat template or tokenizer round trip")
        step.status = "failed" if problems else "ok"
        self.benchmark_accuracy = info["benchmark_accuracy"]
        self.fixture_snapshot = Path(info["snapshot"])
        step.detail = "; ".join(problems) or (
            f"{HUB_ID} -> {info['model_class']} ({info['parameters']} parameters), {info['tokenizer_class']}, sampled "
            f"accuracy {info['warm_accuracy']:.2f} (training prompts), {info['benchmark_accuracy']:.2f} (benchmarks)")
        return self.record(step)

    def train(self, name: str, method: str, kind: str, overrides: Sequence[str], run_dir: Path,
              kill_after: int = 0, extra_args: Sequence[str] = (), wait_checkpoint: bool = True) -> Step:
        """Launch one run with accelerate on 2 ranks; with kill_after > 0, SIGKILL it once metrics.jsonl has that
        many steps (and, with wait_checkpoint, a checkpoint exists), relaunch the same command and check that it
        resumed (or restarted, without a checkpoint) and logged every step once."""
        from fr3e.results import accelerate_command

        step, t0 = Step(name), time.perf_counter()
        config = accelerate_config(kind, self.dir / "accelerate")
        cmd = accelerate_command(config, recipe(method), overrides, run_dir, cache_dir=self.cache_dir) + list(extra_args)
        step.checks["command"] = " ".join(cmd)
        proc = self.launch(run_dir.name, cmd)
        deadline = time.monotonic() + self.timeout
        if kill_after:
            latest = run_dir / "checkpoints" / "latest"
            while time.monotonic() < deadline and proc.poll() is None and (
                    metrics_steps(run_dir) < kill_after or (wait_checkpoint and not latest.exists())):
                time.sleep(0.1)
            if proc.poll() is not None or (run_dir / "DONE").exists():
                code = proc.wait(deadline)
                if not self.finish(step, proc, code, t0, f"{name} (before the kill)"):
                    return self.record(step)
                step.status, step.detail = "failed", (f"the run finished before metrics.jsonl had {kill_after} "
                                                      "steps and a checkpoint: the kill came too late (raise "
                                                      "Sizes.steps)")
                return self.record(step)
            if time.monotonic() >= deadline:
                proc.kill()
                step.seconds, step.status, step.log = round(time.perf_counter() - t0, 1), "timeout", str(proc.log)
                step.detail = (f"{name}: metrics.jsonl had {metrics_steps(run_dir)} of {kill_after} steps after "
                               f"{self.timeout:.0f} s (killed); last output:\n" + failure_excerpt(proc.output()))
                return self.record(step)
            proc.kill()
            killed_at = metrics_steps(run_dir)
            step.checks["killed_at_step"] = killed_at
            step.checks["checkpoint_at_kill"] = latest.read_text().strip() if latest.exists() else None
            self.say(f"{name}: killed (SIGKILL to the launcher and every rank) at step {killed_at}, "
                     f"checkpoint {step.checks['checkpoint_at_kill']}; relaunching the same command")
            proc = self.launch(run_dir.name, cmd)
            deadline = time.monotonic() + self.timeout
        code = proc.wait(deadline)
        if not self.finish(step, proc, code, t0, name + (" (after the relaunch)" if kill_after else "")):
            return self.record(step)
        resumed = bool(kill_after) and step.checks.get("checkpoint_at_kill") is not None
        problems = self.check_run(run_dir, method, kind, step.checks, resumed=resumed, output=proc.output())
        step.status = "failed" if problems else "ok"
        step.detail = "; ".join(problems) or (f"{step.checks['steps_logged']} steps, {step.checks['eval_rows']} eval "
                                              f"rows, world size {step.checks['world_size']}")
        return self.record(step)

    def check_run(self, run_dir: Path, method: str, kind: str, checks: dict, resumed: bool, output: str) -> list[str]:
        """What a finished run must hold; returns the problems found (empty = fine)."""
        problems = []
        config = json.loads((run_dir / "config.json").read_text())
        env = json.loads((run_dir / "env.json").read_text()) if (run_dir / "env.json").exists() else {}
        rows = read_jsonl(run_dir / "metrics.jsonl") if (run_dir / "metrics.jsonl").exists() else []
        evals = read_jsonl(run_dir / "eval.jsonl") if (run_dir / "eval.jsonl").exists() else []
        checks.update({"world_size": env.get("world_size"), "steps_logged": len(rows),
                       "steps": [r.get("step") for r in rows], "eval_rows": len(evals),
                       "final_eval": {e["benchmark"]: e.get("avg") for e in evals if e.get("step") == config["steps"]},
                       "done": (run_dir / "DONE").exists()})
        if not checks["done"]:
            problems.append("no DONE file")
        if env.get("world_size") != 2:
            problems.append(f"world size {env.get('world_size')} in env.json, expected 2 ranks")
        if [r.get("step") for r in rows] != list(range(1, config["steps"] + 1)):
            problems.append(f"metrics.jsonl steps {checks['steps']}, expected 1..{config['steps']} once each")
        if resumed and "resumed" not in output:
            problems.append("the relaunch did not log 'resumed ... from step'")
        model_dir = run_dir / "model"
        checks["model_files"] = sorted(p.name for p in model_dir.iterdir()) if model_dir.is_dir() else []
        if not any(n.endswith((".safetensors", ".bin")) for n in checks["model_files"]):
            problems.append("no weights in the final model directory")
        benches = list(config["data"]["eval_benchmarks"])
        missing = [b for b in benches if b not in checks["final_eval"]]
        if missing:
            problems.append(f"no final evaluation row for {missing}")
        scores = [v for v in checks["final_eval"].values() if v is not None]
        if scores and max(scores) == 0 and self.benchmark_accuracy >= 0.2:
            problems.append(
                f"the final evaluation scores 0 on every benchmark, but the fixture model answers "
                f"{self.benchmark_accuracy:.0%} of these problems when prompted through the chat template and "
                "stopped at <|im_end|>: evaluation prompts or stop tokens differ from training's (issue 10, defects 6, 10)")
        change = weight_change(self.fixture_snapshot, model_dir) if self.fixture_snapshot else None
        checks["max_weight_change"] = change
        if change == 0.0:
            problems.append("the saved model equals the base model: no update reached the final weights")
        ckpts = sorted((run_dir / "checkpoints").glob("step-*"))
        files = sorted(p.name for p in ckpts[-1].iterdir()) if ckpts else []
        checks["checkpoint_files"] = files
        fsdp = any("fsdp" in n for n in files)
        if kind == "fsdp" and not fsdp:
            problems.append("FSDP was not active: the checkpoint holds no FSDP state (" + ", ".join(files) + "); "
                            "accelerate turns an FSDP config into MULTI_CPU DDP when Accelerator(cpu=True)")
        return problems

    def base_rows(self, overrides: Sequence[str]) -> Step:
        step, t0 = Step("base-model rows (results.base_evals)"), time.perf_counter()
        args = {"models": [HUB_ID], "recipe": str(recipe("fr3e")), "runs_root": str(self.runs_root),
                "overrides": list(overrides), "eval_n": self.sizes.eval_n, "eval_problems": self.sizes.eval_problems,
                "cache_dir": str(self.cache_dir)}
        proc = self.launch("base_evals", [sys.executable, "-m", "fr3e.rehearsal", "base-evals", json.dumps(args)])
        code = proc.wait(time.monotonic() + self.timeout)
        if self.finish(step, proc, code, t0, "fr3e.results.base_evals"):
            out = proc.output().strip().splitlines()[-1]
            step.checks["rows"] = json.loads(out)
            step.status, step.detail = "ok", f"{len(step.checks['rows'])} rows"
        return self.record(step)

    def notebook(self, overrides: Sequence[str], fsdp_config: Path) -> Step:
        step, t0 = Step("Table 1 notebook (papermill, paper parameters)"), time.perf_counter()
        params = {"models": [TABLE1_MODEL], "steps": self.sizes.steps, "eval_n": self.sizes.eval_n,
                  "eval_problems": self.sizes.eval_problems, "overrides": list(overrides),
                  "runs_root": str(self.runs_root), "results_dir": str(self.dir / "results"),
                  "cache_dir": str(self.cache_dir), "accelerate_config": str(fsdp_config)}
        proc = self.launch("notebook", [sys.executable, "-m", "fr3e.rehearsal", "notebook", json.dumps(params)])
        code = proc.wait(time.monotonic() + self.timeout)
        if self.finish(step, proc, code, t0, "the Table 1 notebook"):
            out = self.dir / "results" / "table1"
            step.checks["files"] = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
            missing = [f for f in ("data.csv", "summary.json", "02_table1.ipynb") if f not in step.checks["files"]]
            step.status = "failed" if missing else "ok"
            step.detail = f"missing {missing} in {out}" if missing else f"wrote {out}"
        else:
            failed = self.dir / "results" / "table1" / "02_table1.failed.ipynb"
            if failed.exists():
                step.detail += f"\n(executed notebook kept as {failed})"
        return self.record(step)

    # ---------------------------------------------------------------------------------------- sequence
    def run(self) -> bool:
        self.dir.mkdir(parents=True, exist_ok=True)
        for old in (self.runs_root, self.dir / "results", self.logs, self.dir / "accelerate"):
            shutil.rmtree(old, ignore_errors=True)  # every rehearsal trains from scratch (kill/resume needs it)
        mode = "quick" if self.quick else "full"
        self.say(f"{mode} rehearsal of make reproduce-table1 PROFILE=paper in {self.dir} "
                 f"(timeout {self.timeout:.0f} s per step)")
        fixture = self.fixture()
        if fixture.status != "ok":
            self.skipped("training runs, evaluation, notebook", "the fixture model is not available")
            return self.done()
        overrides = size_overrides(self.sizes)
        files: list[str] = []  # the data files travel as overrides (size_overrides)
        fr3e_dir, fr3e_ov = table1_run("fr3e", self.sizes, self.runs_root, overrides)
        if self.quick:
            self.train("FR3E, FSDP2, zero-reward rank 1, kill -9 + resume", "fr3e", "fsdp",
                       fr3e_ov + ["rehearsal_zero_reward_rank=1"], fr3e_dir, kill_after=2, extra_args=files)
            return self.done()
        self.train("FR3E (Table 1 run), FSDP2, kill -9 + resume", "fr3e", "fsdp", fr3e_ov, fr3e_dir, kill_after=2,
                   extra_args=files)
        grpo_dir, grpo_ov = table1_run("grpo_pp", self.sizes, self.runs_root, overrides)
        self.train("GRPO++ (Table 1 run), DDP", "grpo_pp", "ddp", grpo_ov, grpo_dir, extra_args=files)
        zero = dataclasses.replace(self.sizes, steps=3, eval_benchmarks=("gsm8k", "math500"), eval_every=0)
        zero_ov = size_overrides(zero) + [f"steps={zero.steps}", f"data.eval_n={zero.eval_n}",
                                          "rehearsal_zero_reward_rank=1", "name=fr3e-zero-reward-rank1"]
        self.train("FR3E, DDP, zero-reward rank 1, kill -9 before the first checkpoint", "fr3e", "ddp", zero_ov,
                   self.runs_root / "fr3e-zero-reward-rank1", kill_after=1, extra_args=files, wait_checkpoint=False)
        self.base_rows(overrides)
        if (fr3e_dir / "DONE").exists() and (grpo_dir / "DONE").exists():
            self.notebook(overrides, accelerate_config("fsdp", self.dir / "accelerate"))
        else:
            self.skipped("Table 1 notebook", "a Table 1 run has no DONE (the notebook would launch it again, untimed)")
        return self.done()

    def done(self) -> bool:
        summary = self.summary()
        atomic_write_json(self.dir / "rehearsal.json", summary)
        bad = [s.name for s in self.steps if s.status in ("failed", "timeout")]
        self.say(f"{'PASSED' if not bad else 'FAILED'} in {summary['seconds']:.0f} s"
                 + (f"; failed: {', '.join(bad)}" if bad else "") + f" (record: {self.dir / 'rehearsal.json'})")
        return not bad


# ================================================================================================ CLI
def _cmd_build_fixture(args) -> int:
    model_dir = build_fixture_model(cache_dir=args.cache_dir)
    snapshot = install_hub_cache(model_dir, args.hf_home)
    info = verify_hub_loading(args.hf_home)
    meta = json.loads((model_dir / "rehearsal.json").read_text())
    info.update({"model_dir": str(model_dir), "snapshot": str(snapshot),
                 "warm_accuracy": meta["warm_start"][-1]["accuracy"], "warm_start": meta["warm_start"],
                 "benchmark_accuracy": meta["benchmark_accuracy"]})
    sys.stdout.write(json.dumps(info) + "\n")
    return 0


def _cmd_base_evals(args) -> int:
    from fr3e.results import base_evals

    kw = json.loads(args.spec)
    df = base_evals(kw.pop("models"), kw.pop("recipe"), **kw)
    sys.stdout.write(df.to_json(orient="records") + "\n")
    return 0


def _cmd_notebook(args) -> int:
    from fr3e.reproduce import NOTEBOOK_DIR, NOTEBOOKS, full_parameters, run_notebook

    declared = _declared(NOTEBOOK_DIR / NOTEBOOKS["table1"])
    params = {k: v for k, v in {**full_parameters("paper"), **json.loads(args.spec)}.items() if k in declared}
    saved, seconds = run_notebook("table1", params, progress=False)
    sys.stdout.write(json.dumps({"notebook": str(saved), "seconds": seconds}) + "\n")
    return 0


def _declared(notebook: Path) -> set[str]:
    from fr3e.reproduce import declared_parameters

    return declared_parameters(notebook)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; a user error is one line on stderr and status 2 (`fr3e.cli.run_cli`)."""
    from fr3e.cli import run_cli

    return run_cli(_main, argv)


def _main(argv: Sequence[str]) -> int:
    from fr3e.cli import UserError, add_debug_flag, check_writable

    parser = argparse.ArgumentParser(prog="python -m fr3e.rehearsal", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the reduced rehearsal of make test (< 2 min)")
    parser.add_argument("--dir", type=Path, default=None, help="rehearsal directory (default runs/rehearsal[-quick])")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where the fixture model is cached")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per step (default 240, quick 150)")
    parser.add_argument("--fresh", action="store_true", help="delete the rehearsal directory first")
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("build-fixture", help="(internal) build, install and load the fixture model; print JSON")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--hf-home", type=Path, required=True)
    for name in ("base-evals", "notebook"):
        sub.add_parser(name, help=f"(internal) the {name} step; argument: JSON").add_argument("spec")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    if args.command == "build-fixture":
        return _cmd_build_fixture(args)
    if args.command == "base-evals":
        return _cmd_base_evals(args)
    if args.command == "notebook":
        return _cmd_notebook(args)
    out_dir = args.dir or (DEFAULT_DIR.parent / ("rehearsal-quick" if args.quick else "rehearsal"))
    if args.timeout is not None and args.timeout <= 0:
        raise UserError(f"--timeout {args.timeout}: seconds per step must be positive (default 240, quick 150).")
    check_writable(out_dir, what="rehearsal directory", flag="--dir")
    check_writable(args.cache_dir, what="cache directory", flag="--cache-dir")
    if args.fresh and out_dir.exists():
        shutil.rmtree(out_dir)
    timeout = args.timeout or (150.0 if args.quick else 240.0)
    ok = Rehearsal(out_dir, args.quick, timeout, args.cache_dir).run()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
