"""The rehearsal's fixture model (steps 1 and 2 of `fr3e.rehearsal`): a small Qwen2-architecture model built
here, warm-started on the fixture data, and installed under a hub id in a local Hugging Face cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fr3e.utils.io import atomic_write_json, atomic_write_text
from fr3e.utils.logs import failure_excerpt

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
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
directory, which rebuilds a `Qwen2Tokenizer`, encodes exactly as our tokenizer.json does (transformers trap:
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
    """(train, benchmark) rows {prompt, answer} of the fixture files, read through `fr3e.data.paper`'s loaders.

    The warm start trains on both (the fixture model should score above zero on the benchmarks too, so the
    evaluation numbers of the rehearsal move); the accuracy check uses the training prompts only.
    """
    from fr3e.data.paper import load_benchmark, load_train_mix

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

    from fr3e.data.paper import chat_prompt
    from fr3e.method.rewards import reward

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

    from fr3e.data.paper import chat_prompt

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
                "note": "Qwen2.5 base layout: generation_config names <|endoftext|> only"}})
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
