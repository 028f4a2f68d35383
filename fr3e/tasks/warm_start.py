"""SFT warm start of the tiny model: the `tiny` profile's stand-in for the paper's pre-trained base models.

The paper starts RL from Qwen2.5-7B, Qwen2.5-Math-7B and Qwen2.5-32B base models (Table 1, "zero RL"). A
model initialised from scratch solves nothing, so every reward would be 0 and RL would have no signal; we
first fine-tune the tiny decoder on worked solutions of the arithmetic world (`fr3e.tasks.arithmetic`,
`train` split) until it is partially competent. Two base models mirror Table 1's rows:
`general` (short warm start, weaker, like Qwen2.5-7B) and `math` (longer warm start, "math-specialised",
like Qwen2.5-Math-7B: stronger start, less room for RL).

The version we implement:
- Completion-only loss: token-mean cross-entropy over the solution tokens and the final EOS; prompt tokens
  (BOS + question) and padding carry no loss.
- A plain torch loop (AdamW, linear warm-up then cosine decay, grad-clip), not TRL's SFTTrainer, because
  (a) on 2 CPU cores the Trainer's per-step overhead (callbacks, logging, dataloader workers, collators)
  is a visible share of a ~0.12 s step, (b) we need bitwise determinism for a fixed seed and full control
  of threads (`training_threads`), data order and the completion-only mask, and (c) it is 30 lines anyone
  can read.
- Problems are drawn on the fly from the training pool (never from the evaluation pool).
- Cached by a hash of (name, config, seed, task version and fingerprint): `cache_dir/<name>-<hash>/` holds the model, the
  tokenizer and `warm_start.json`; a second call returns at once. Training writes into a temporary
  directory that is renamed into place only when complete, so an interrupted run leaves nothing half-made.
- **Shipped.** The two base models of `BASE_MODELS` ship with the package (`fr3e/tasks/warm_starts/<name>-<hash>/`,
  ~1.8 MB each, every file's sha256 in its `manifest.json`). A cache miss copies the shipped directory
  whose hash matches, after checking every checksum, instead of training for minutes; so every machine
  starts RL from bit-identical base models (training them is deterministic on one CPU type, but floating
  point differs across CPU types, and every number downstream inherits that). `rebuild=True`, or the
  environment variable FR3E_REBUILD_WARM_STARTS=1, trains instead (`make warm-starts` rebuilds the shipped
  copies). A config, seed or task that differs from the shipped one has another hash and is trained.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from fr3e.tasks.model import build_tiny, num_parameters, save_tiny
from fr3e.tasks.tokenizer import build_tokenizer
from fr3e.tasks.worlds import DEFAULT_WORLD, get_world

logger = logging.getLogger(__name__)

TASK_VERSION = "arithmetic-v1"
"""Bump when the training code changes, or the task in a way the fingerprint (first training problems +
vocabulary) cannot see, so cached warm starts are rebuilt."""


@dataclass(frozen=True)
class WarmStartConfig:
    """One SFT warm start. Defaults are our choice (measured on 2 CPU cores); the paper has no such step."""

    steps: int = 800  # optimizer steps (BASE_MODELS sets it per base model)
    batch_size: int = 64  # problems per step (~3k tokens)
    lr: float = 3e-3  # peak AdamW learning rate (tiny models tolerate a high LR)
    warmup_steps: int = 50  # linear warm-up steps, then cosine decay to min_lr_ratio · lr
    min_lr_ratio: float = 0.1  # final LR as a share of the peak
    weight_decay: float = 0.01  # AdamW weight decay (as the paper's RL optimizer)
    grad_clip: float = 1.0  # max global grad norm
    hidden_size: int = 128  # model width (fr3e.tasks.model.build_tiny_model)
    num_layers: int = 2  # decoder layers
    num_heads: int = 4  # attention heads
    intermediate_size: int = 384  # SwiGLU MLP width

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be >= 1, got {self.steps}, {self.batch_size}")
        if not 0 <= self.warmup_steps < self.steps:
            raise ValueError(f"warmup_steps must be in [0, steps), got {self.warmup_steps} for steps={self.steps}")
        if self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"need lr > 0 and 0 <= min_lr_ratio <= 1, got {self.lr}, {self.min_lr_ratio}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must be divisible by num_heads {self.num_heads}")


BASE_MODELS = {
    # Short warm start, the weaker base model (stands in for Qwen2.5-7B). Measured (seed 0, n=16, T=1,
    # top_p 0.95, 128 problems per split): avg@16 easy 67.1, medium 39.6, hard 2.6.
    "general": WarmStartConfig(steps=800),
    # Longer warm start, the stronger "math-specialised" base model (Qwen2.5-Math-7B): less room for RL.
    # Measured the same way: avg@16 easy 73.3, medium 51.7, hard 3.2.
    "math": WarmStartConfig(steps=900),
}
"""The two tiny base models mirroring the paper's Table 1 rows. Accuracy rises steeply with SFT steps on
this task (650 steps: 40/20/1; 1000 steps: 84/66/5), so the step counts are tuned, not round numbers."""


PATHS_BASE_MODELS = {
    # The path world's two base models (fr3e.tasks.paths): the same decoder, a shorter and a longer warm start.
    "general": WarmStartConfig(steps=600, warmup_steps=50),
    "math": WarmStartConfig(steps=1200, warmup_steps=50),
}
"""The path world's stand-ins for the general and the specialised base model (measured in
reproduce/worlds/README.md)."""

WORLD_BASE_MODELS = {"arithmetic": BASE_MODELS, "paths": PATHS_BASE_MODELS}
"""The base models of the worlds the studies run on, each shipped in fr3e/tasks/warm_starts/."""

CANDIDATE_BASE_MODELS = {
    # Candidate worlds measured on the scorecard only (reproduce/worlds/): the path world's two warm starts,
    # not shipped (they train on first use).
    "countdown": {"general": WarmStartConfig(steps=600, warmup_steps=50),
                  "math": WarmStartConfig(steps=1200, warmup_steps=50)},
}


def base_models(world: str = DEFAULT_WORLD) -> dict[str, WarmStartConfig]:
    get_world(world)  # a clear error for an unknown world
    return WORLD_BASE_MODELS[world] if world in WORLD_BASE_MODELS else CANDIDATE_BASE_MODELS[world]


def task_fingerprint(seed: int = 0, num_problems: int = 64, world: str = DEFAULT_WORLD) -> str:
    """Hash of the first training problems and the tokenizer vocabulary: changes when the task does."""
    stream = get_world(world).iter_problems("train", seed=seed)
    problems = [next(stream) for _ in range(num_problems)]
    vocab = build_tokenizer().get_vocab()
    blob = json.dumps([[p.prompt, p.solution] for p in problems] + [sorted(vocab.items())])
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def config_hash(name: str, config: WarmStartConfig, seed: int, world: str = DEFAULT_WORLD) -> str:
    """12 hex digits identifying a warm start (its cache key): name, config, seed and the task itself."""
    record = {"name": name, "config": dataclasses.asdict(config), "seed": seed,
              "task": TASK_VERSION, "task_fingerprint": task_fingerprint(seed, world=world)}
    if world != "arithmetic":  # the arithmetic keys predate worlds and stay as they were
        record["world"] = world
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:12]


def directory_name(name: str, key: str, world: str = DEFAULT_WORLD) -> str:
    """`<name>-<hash>` for the arithmetic world, `<world>-<name>-<hash>` for the others."""
    return f"{name}-{key}" if world == "arithmetic" else f"{world}-{name}-{key}"


def encode_example(tokenizer, prompt: str, solution: str) -> tuple[list[int], list[int]]:
    """(input ids, labels) for one SFT example: BOS prompt solution EOS, labels -100 on BOS + prompt."""
    prompt_ids = tokenizer(prompt).input_ids  # BOS + prompt
    target_ids = tokenizer(solution, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    return prompt_ids + target_ids, [-100] * len(prompt_ids) + target_ids


def collate(examples: list[tuple[list[int], list[int]]], pad_token_id: int):
    """Right-pad a batch: input_ids (B, T), attention_mask (B, T), labels (B, T) with -100 on padding."""
    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for b, (x, y) in enumerate(examples):
        ids[b, : len(x)], labels[b, : len(y)], mask[b, : len(x)] = torch.tensor(x), torch.tensor(y), 1
    return ids, mask, labels


def completion_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Token-mean next-token cross-entropy over labelled positions. logits (B, T, V), labels (B, T)."""
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1), ignore_index=-100
    )


def _lr_at(step: int, config: WarmStartConfig) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * progress))
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine)


def available_threads() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def training_threads() -> int:
    """Torch threads for the warm start: every available core, or half of them when the machine is already
    busy (1-min load average >= cores). Measured on 2 cores shared with other jobs: 2 OpenMP threads
    contending for busy cores ran ~8× slower than 1 thread. The weights are bitwise identical for 1 and 2
    threads (measured), so this choice never changes the result."""
    cores = available_threads()
    try:
        busy = os.getloadavg()[0] >= cores
    except OSError:  # load average unavailable
        busy = False
    return max(1, cores // 2) if busy else cores


def train_sft(config: WarmStartConfig, seed: int = 0, progress: bool = True, world: str = DEFAULT_WORLD):
    """Train a fresh tiny model; returns (model, tokenizer, info dict). Deterministic for a fixed seed."""
    torch.manual_seed(seed)
    model, tokenizer = build_tiny(
        seed=seed, hidden_size=config.hidden_size, num_layers=config.num_layers,
        num_heads=config.num_heads, intermediate_size=config.intermediate_size,
    )
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr, betas=(0.9, 0.95),
    )
    stream = get_world(world).iter_problems("train", seed=seed)
    losses, tokens, start = [], 0, time.perf_counter()
    bar = tqdm(range(config.steps), desc="warm start", disable=not progress)
    for step in bar:
        batch = [encode_example(tokenizer, p.prompt, p.solution) for p in (next(stream) for _ in range(config.batch_size))]
        ids, mask, labels = collate(batch, tokenizer.pad_token_id)
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, config)
        logits = model(input_ids=ids, attention_mask=mask).logits  # (B, T, V)
        loss = completion_loss(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        losses.append(loss.item())
        tokens += int(mask.sum())
        if step % 20 == 0 or step == config.steps - 1:
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    seconds = time.perf_counter() - start
    model.eval()
    tail = losses[-min(50, len(losses)):]
    info = {
        "train_seconds": round(seconds, 2),
        "final_loss": sum(tail) / len(tail),  # mean of the last 50 steps
        "loss_curve": [round(x, 4) for x in losses[:: max(1, len(losses) // 100)]],
        "train_tokens": tokens,
        "num_parameters": num_parameters(model),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
    }
    return model, tokenizer, info


SHIPPED_DIR = Path(__file__).resolve().parent / "warm_starts"
"""Where the shipped base models live: `<name>-<hash>/` as in a cache directory, plus `manifest.json`."""
MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifest(directory: Path) -> dict:
    """`manifest.json` in `directory`: the size and sha256 of every other file in it."""
    files = {p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)}
             for p in sorted(directory.iterdir()) if p.is_file() and p.name != MANIFEST}
    (directory / MANIFEST).write_text(json.dumps({"files": files}, indent=1) + "\n")
    return files


def verify_manifest(directory: Path) -> list[str]:
    """The files of `directory` that are missing or differ from its manifest (empty: intact)."""
    files = json.loads((directory / MANIFEST).read_text())["files"]
    return [name for name, want in files.items()
            if not (directory / name).is_file() or _sha256(directory / name) != want["sha256"]]


def _install_shipped(shipped: Path, final: Path) -> None:
    """Copy a verified shipped warm start into the cache (through a temporary directory, renamed in place)."""
    bad = verify_manifest(shipped)
    if bad:
        raise RuntimeError(f"the shipped warm start {shipped} is damaged ({', '.join(bad)} differ from its "
                           "manifest.json). Restore it (git checkout -- fr3e/tasks/warm_starts) or train it with "
                           "FR3E_REBUILD_WARM_STARTS=1.")
    def copy(tmp: Path) -> None:
        for p in shipped.iterdir():
            if p.is_file() and p.name != MANIFEST:
                shutil.copy2(p, tmp / p.name)

    _publish(final, copy)


def _publish(final: Path, fill) -> None:
    """`fill(tmp)` a temporary directory beside `final`, then rename it into place, so a reader never sees a
    half-written warm start; when another process published the same one first, keep theirs."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        fill(tmp)
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished the same warm start first: keep theirs
            if not (final / "warm_start.json").exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def ship(names: tuple[str, ...] | None = None, seed: int = 0, progress: bool = True,
         world: str = DEFAULT_WORLD) -> list[Path]:
    """Train the base models of `world` afresh and replace their shipped copies (`make warm-starts`)."""
    out = []
    for name in names or tuple(base_models(world)):
        with tempfile.TemporaryDirectory() as cache:
            built = warm_start(name, cache_dir=cache, seed=seed, progress=progress, rebuild=True, world=world)
            target = SHIPPED_DIR / built.name
            for old in SHIPPED_DIR.glob(directory_name(name, "*", world)):
                shutil.rmtree(old)
            shutil.copytree(built, target)
            write_manifest(target)
            out.append(target)
    return out


def warm_start(
    name: str = "general",
    cache_dir: str | Path = "runs/cache",
    seed: int = 0,
    progress: bool = True,
    config: WarmStartConfig | None = None,
    threads: int | None = None,
    rebuild: bool | None = None,
    world: str = DEFAULT_WORLD,
) -> Path:
    """The directory of the warm-started base model `name` (model + tokenizer + warm_start.json).

    Trains it on first use (1-3 min on 2 cores), then returns the cached directory at once.
    `config` overrides `BASE_MODELS[name]` (tests use a few-step config). `threads`: torch CPU threads
    while training (default: `training_threads()`). Bitwise deterministic for a fixed seed.
    A cache miss takes the shipped copy when one has this hash and verifies (see the module docstring),
    unless `rebuild` (default: FR3E_REBUILD_WARM_STARTS=1) asks to train. `world`: the tiny world whose
    training split it learns (`fr3e.tasks.worlds`).
    """
    if config is None:
        models = base_models(world)
        if name not in models:
            raise ValueError(f"unknown base model {name!r}; choose one of {sorted(models)} or pass config=")
        config = models[name]
    key = config_hash(name, config, seed, world)
    cache_dir = Path(cache_dir)
    final = cache_dir / directory_name(name, key, world)
    if (final / "warm_start.json").exists():
        logger.info("warm start %s: cached at %s", name, final)
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    if rebuild is None:
        rebuild = os.environ.get("FR3E_REBUILD_WARM_STARTS", "") not in ("", "0")
    shipped = SHIPPED_DIR / final.name
    if not rebuild and (shipped / MANIFEST).exists():
        _install_shipped(shipped, final)
        logger.info("warm start %s: shipped copy %s -> %s", name, shipped, final)
        return final
    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads or training_threads())
    try:
        logger.info("warm start %s: training %s (seed %d)", name, config, seed)
        model, tokenizer, info = train_sft(config, seed=seed, progress=progress, world=world)
    finally:
        torch.set_num_threads(threads_before)
    def save(tmp: Path) -> None:
        save_tiny(model, tokenizer, tmp)
        record = {"name": name, "hash": key, "seed": seed, "task": TASK_VERSION,
                  **({} if world == "arithmetic" else {"world": world}),
                  "config": dataclasses.asdict(config), **info}
        (tmp / "warm_start.json").write_text(json.dumps(record, indent=1))

    _publish(final, save)
    logger.info("warm start %s: %.0f s, final loss %.3f -> %s", name, info["train_seconds"], info["final_loss"], final)
    return final
