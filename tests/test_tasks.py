"""The embedded tiny world: arithmetic splits, character tokenizer, tiny model, SFT warm start."""

import json
import re

import pytest
import torch

from fr3e.method.rewards import reward
from fr3e.tasks import arithmetic
from fr3e.tasks.arithmetic import SPLITS, default_eval_sizes, is_eval_problem, iter_problems, make_split
from fr3e.tasks.model import build_tiny, num_parameters, save_tiny
from fr3e.tasks.tokenizer import build_tokenizer, load_tokenizer
from fr3e.tasks.warm_start import (
    BASE_MODELS,
    WarmStartConfig,
    collate,
    completion_loss,
    config_hash,
    encode_example,
    warm_start,
)

COLUMNS = ["id", "prompt", "answer", "solution", "data_source", "difficulty"]


# ------------------------------------------------------------------------------------------ task
@pytest.mark.parametrize("split", [*SPLITS, "train"])
def test_split_columns_and_worked_solutions(split):
    ds = make_split(split, 64, seed=3)
    assert ds.column_names == COLUMNS and len(ds) == 64
    assert len(set(ds["id"])) == 64
    for row in ds:
        assert row["data_source"] == f"tiny/{split}"
        assert row["difficulty"] in SPLITS and (split == "train" or row["difficulty"] == split)
        assert row["prompt"].endswith("=?\n")
        assert row["solution"].endswith(f"\\boxed{{{row['answer']}}}")
        # The question evaluates to the answer, and every worked step "x op y=z" is true arithmetic.
        assert eval(row["prompt"][:-3]) == int(row["answer"])
        for x, op, y, z in re.findall(r"(\d+)([*+])(\d+)=(\d+)", row["solution"]):
            assert (int(x) * int(y) if op == "*" else int(x) + int(y)) == int(z)
        assert reward(row["solution"], row["answer"]) == 1.0
        if row["difficulty"] != "hard":
            assert len(row["prompt"]) + len(row["solution"]) <= 100


def test_split_is_deterministic_and_prefix_stable():
    a, b = make_split("medium", 50, seed=1), make_split("medium", 50, seed=1)
    assert a[:] == b[:]
    assert make_split("medium", 20, seed=1)["prompt"] == a["prompt"][:20]
    assert make_split("medium", 50, seed=2)["prompt"] != a["prompt"]


def test_eval_problems_distinct_within_a_split():
    for split in SPLITS:
        ds = make_split(split, default_eval_sizes[split])
        assert len(set(ds["prompt"])) == len(ds)


def test_train_and_eval_never_overlap():
    # The partition is by hash of the problem key, so it holds for any sizes and seeds.
    eval_prompts = {p for s in SPLITS for seed in (0, 1) for p in make_split(s, default_eval_sizes[s], seed)["prompt"]}
    train = make_split("train", 5000, seed=0)["prompt"]
    assert not eval_prompts & set(train)
    stream = iter_problems("train", seed=7)
    assert not any(is_eval_problem(next(stream).key) for _ in range(2000))
    # Commutativity: "23*47" and "47*23" share a key, so both land in the same pool.
    assert arithmetic._product_plus(23, 47, 5, "medium").key == arithmetic._product_plus(47, 23, 5, "medium").key


def test_split_errors_teach():
    with pytest.raises(ValueError, match="unknown split"):
        make_split("gsm8k", 3)
    with pytest.raises(ValueError, match="ask for fewer"):
        make_split("easy", 10_000)


def test_train_mix_has_every_difficulty():
    counts = {d: 0 for d in SPLITS}
    for d in make_split("train", 1000)["difficulty"]:
        counts[d] += 1
    for d, share in arithmetic.TRAIN_MIX.items():
        assert abs(counts[d] / 1000 - share) < 0.06, counts


# ------------------------------------------------------------------------------------- tokenizer
def test_tokenizer_round_trip_through_the_package_loader(tmp_path):
    tok = build_tokenizer()
    tok.save_pretrained(tmp_path)
    loaded = load_tokenizer(tmp_path)
    text = "12*34=?\n 12*30=360\n\\boxed{408} ~{}\\"
    for t in (tok, loaded):
        ids = t(text).input_ids
        assert ids[0] == t.bos_token_id and t.eos_token_id not in ids
        assert len(ids) == len(text) + 1  # one token per character, plus BOS
        assert t.decode(ids, skip_special_tokens=True) == text  # \n, spaces, \, {, } survive
    assert loaded(text).input_ids == tok(text).input_ids
    assert (loaded.bos_token, loaded.eos_token, loaded.pad_token, loaded.unk_token) == ("<s>", "</s>", "<pad>", "<unk>")


def test_tokenizer_unknown_characters_map_to_unk():
    tok = build_tokenizer()
    ids = tok("1é\t€2", add_special_tokens=False).input_ids
    assert ids == [tok.convert_tokens_to_ids("1"), *[tok.unk_token_id] * 3, tok.convert_tokens_to_ids("2")]


def test_load_tokenizer_missing_dir_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="build_tokenizer"):
        load_tokenizer(tmp_path)


# ----------------------------------------------------------------------------------------- model
def test_tiny_model_saves_and_loads_with_auto_classes(tmp_path):
    from transformers import AutoModelForCausalLM

    model, tok = build_tiny(seed=0)
    assert 300_000 < num_parameters(model) < 4_000_000
    assert model.config.model_type == "qwen3" and next(model.parameters()).dtype == torch.float32
    save_tiny(model, tok, tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    ids = torch.tensor([tok("12*34=?\n").input_ids])
    torch.testing.assert_close(loaded(ids).logits, model(ids).logits)
    assert load_tokenizer(tmp_path)("\\boxed{1}\n").input_ids == tok("\\boxed{1}\n").input_ids


def test_tiny_model_is_deterministic_in_seed():
    a, _ = build_tiny(seed=5)
    b, _ = build_tiny(seed=5)
    c, _ = build_tiny(seed=6)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


# ------------------------------------------------------------------------------------ warm start
def test_completion_only_labels():
    tok = build_tokenizer()
    ids, labels = encode_example(tok, "2*3=?\n", "\\boxed{6}")
    # BOS + 6 prompt chars carry no loss; the 9 solution chars and EOS do.
    assert len(ids) == 1 + 6 + 9 + 1
    assert labels[:7] == [-100] * 7 and labels[7:] == ids[7:] and ids[-1] == tok.eos_token_id


def test_collate_and_completion_loss_ignore_prompt_and_padding():
    ids, mask, labels = collate([([1, 5, 6], [-100, -100, 6]), ([1, 7], [-100, 7])], pad_token_id=0)
    assert ids.tolist() == [[1, 5, 6], [1, 7, 0]] and mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    assert labels.tolist() == [[-100, -100, 6], [-100, 7, -100]]
    # Logits that put all mass on the label at the two labelled positions: loss ≈ 0 whatever the rest.
    logits = torch.zeros(2, 3, 10)
    logits[0, 1, 6] = logits[1, 0, 7] = 50.0
    assert completion_loss(logits, labels).item() < 1e-6
    # Uniform logits: loss = log(10) on each of the 2 labelled tokens.
    torch.testing.assert_close(completion_loss(torch.zeros(2, 3, 10), labels), torch.tensor(2.302585), rtol=1e-5, atol=0)


def test_base_models_and_config_validation():
    assert set(BASE_MODELS) == {"general", "math"}
    assert BASE_MODELS["math"].steps > BASE_MODELS["general"].steps
    with pytest.raises(ValueError, match="warmup_steps"):
        WarmStartConfig(steps=10, warmup_steps=10)
    with pytest.raises(ValueError, match="divisible"):
        WarmStartConfig(hidden_size=130, num_heads=4)
    a = config_hash("general", BASE_MODELS["general"], 0)
    assert a != config_hash("general", BASE_MODELS["general"], 1) != config_hash("math", BASE_MODELS["general"], 0)
    assert a == config_hash("general", BASE_MODELS["general"], 0)


TINY_SFT = WarmStartConfig(steps=4, batch_size=8, warmup_steps=1, hidden_size=32, num_layers=1, num_heads=2,
                           intermediate_size=64)


def test_warm_start_caches_atomically_and_is_deterministic(tmp_path):
    first = warm_start("general", cache_dir=tmp_path / "a", seed=0, progress=False, config=TINY_SFT)
    assert first.name.startswith("general-") and config_hash("general", TINY_SFT, 0) in first.name
    record = json.loads((first / "warm_start.json").read_text())
    assert record["config"]["steps"] == 4 and record["final_loss"] > 0 and record["train_seconds"] >= 0
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [first.name]  # no temp dir left behind
    mtime = (first / "model.safetensors").stat().st_mtime_ns
    assert warm_start("general", cache_dir=tmp_path / "a", seed=0, progress=False, config=TINY_SFT) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == mtime  # cached, not retrained
    # Bitwise deterministic for a fixed seed (fresh cache dir, same weights).
    second = warm_start("general", cache_dir=tmp_path / "b", seed=0, progress=False, config=TINY_SFT)
    assert (first / "model.safetensors").read_bytes() == (second / "model.safetensors").read_bytes()
    assert json.loads((second / "warm_start.json").read_text())["loss_curve"] == record["loss_curve"]


def test_warm_start_interrupted_leaves_nothing(tmp_path, monkeypatch):
    import fr3e.tasks.warm_start as ws

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ws, "save_tiny", boom)
    with pytest.raises(KeyboardInterrupt):
        warm_start("general", cache_dir=tmp_path, progress=False, config=TINY_SFT)
    assert list(tmp_path.iterdir()) == []


def test_warm_start_unknown_name():
    with pytest.raises(ValueError, match="unknown base model"):
        warm_start("qwen", progress=False)


# ---------------------------------------------------------------------------------- shipped warm starts
def test_shipped_warm_starts_are_the_base_models_of_this_code():
    """Each base model ships under the hash of its current config and task; a change that alters the hash
    needs `make warm-starts` (else a fresh clone would train it for minutes and get other numbers)."""
    import fr3e.tasks.warm_start as ws

    expected = set()
    for world, models in ws.WORLD_BASE_MODELS.items():
        for name, config in models.items():
            shipped = ws.SHIPPED_DIR / ws.directory_name(name, config_hash(name, config, 0, world), world)
            assert (shipped / ws.MANIFEST).is_file(), f"no shipped copy {shipped}: run make warm-starts"
            assert ws.verify_manifest(shipped) == [], f"{shipped} differs from its manifest"
            record = json.loads((shipped / "warm_start.json").read_text())
            assert record["name"] == name and record["config"]["steps"] == config.steps
            assert record.get("world", "arithmetic") == world
            expected.add(shipped.name)
    assert {p.name for p in ws.SHIPPED_DIR.iterdir()} == expected  # no stale copies


def test_a_cache_miss_installs_the_shipped_copy_byte_for_byte(tmp_path):
    import fr3e.tasks.warm_start as ws

    got = warm_start("general", cache_dir=tmp_path, progress=False)  # seconds: no training
    shipped = ws.SHIPPED_DIR / got.name
    names = sorted(p.name for p in shipped.iterdir() if p.name != ws.MANIFEST)
    assert sorted(p.name for p in got.iterdir()) == names
    assert all((got / n).read_bytes() == (shipped / n).read_bytes() for n in names)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary directory left


def test_a_damaged_shipped_copy_is_refused_and_rebuild_trains(tmp_path, monkeypatch):
    import fr3e.tasks.warm_start as ws

    key = config_hash("general", TINY_SFT, 0)
    fake = tmp_path / "shipped" / f"general-{key}"
    built = warm_start("general", cache_dir=tmp_path / "build", progress=False, config=TINY_SFT, rebuild=True)
    fake.parent.mkdir()
    import shutil

    shutil.copytree(built, fake)
    ws.write_manifest(fake)
    monkeypatch.setattr(ws, "SHIPPED_DIR", fake.parent)
    assert (warm_start("general", cache_dir=tmp_path / "ok", progress=False, config=TINY_SFT) / "model.safetensors"
            ).read_bytes() == (built / "model.safetensors").read_bytes()
    data = bytearray((fake / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (fake / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(RuntimeError, match=r"damaged \(model.safetensors.*FR3E_REBUILD_WARM_STARTS=1"):
        warm_start("general", cache_dir=tmp_path / "bad", progress=False, config=TINY_SFT)
    monkeypatch.setenv("FR3E_REBUILD_WARM_STARTS", "1")  # trains instead of copying: the damage does not matter
    rebuilt = warm_start("general", cache_dir=tmp_path / "env", progress=False, config=TINY_SFT)
    assert (rebuilt / "model.safetensors").read_bytes() == (built / "model.safetensors").read_bytes()
