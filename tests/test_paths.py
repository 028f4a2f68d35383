"""The path world (fr3e.tasks.paths): its graph, splits, verifier and supervised walks; the world registry."""

import json
import random
from pathlib import Path

import pytest

from fr3e.tasks import paths
from fr3e.tasks.worlds import WORLDS, get_world, reward

CACHE = Path(__file__).resolve().parents[1] / "runs" / "cache"  # the path world's base models (shipped copies)


def shortest_path(s: int, t: int) -> list[int]:
    g = paths.graph()
    path, node = [], s
    while node != t:
        node = next(v for v in g.successors[node] if g.distance[v][t] == g.distance[node][t] - 1)
        path.append(node)
    return path


def text(nodes: list[int]) -> str:
    return ",".join(paths.NODE_NAMES[v] for v in nodes)


def test_graph_is_fixed_strongly_connected_with_out_degree_three():
    g = paths.graph()
    assert len(g.successors) == paths.NUM_NODES and all(len(set(s)) == paths.OUT_DEGREE for s in g.successors)
    assert all(i not in s for i, s in enumerate(g.successors))  # no self-loops
    assert all(d < paths.NUM_NODES for row in g.distance for d in row)  # every node reaches every node
    assert max(max(row) for row in g.distance) < paths.MAX_HOPS
    paths.graph.cache_clear()
    assert paths.graph() == g  # the same draw again


def test_splits_hold_their_distances_and_never_share_a_pair_with_training():
    g = paths.graph()
    train = set(paths.pairs("train"))
    for split in paths.SPLITS:
        lo, hi = paths.DISTANCES[split]
        held = set(paths.pairs(split))
        assert held and not held & train
        assert all(lo <= g.distance[s][t] <= hi for s, t in held)
    every = {(s, t) for s in range(paths.NUM_NODES) for t in range(paths.NUM_NODES) if s != t}
    assert train | set().union(*(paths.pairs(s) for s in paths.SPLITS)) == every


def test_verifier_accepts_any_valid_path_and_nothing_else():
    s, t = paths.pairs("hard")[0]
    answer = f"path:{paths.NODE_NAMES[s]}>{paths.NODE_NAMES[t]}"
    best = shortest_path(s, t)
    assert reward(text(best), answer) == 1.0 and reward(f" {text(best)}\n", answer) == 1.0
    succ = paths.graph().successors
    detour = [succ[s][0], *shortest_path(succ[s][0], t)] if succ[s][0] != t else best
    assert reward(text(detour), answer) == 1.0  # another path counts too
    wrong_edge = next(v for v in range(paths.NUM_NODES) if v not in succ[s] and v != t)
    bad = [
        text(best[:-1]),  # stops short of the target
        text([wrong_edge, *shortest_path(wrong_edge, t)]),  # the first move is not an edge
        text(best) + ",",  # trailing separator
        text(best).replace(",", ""),  # not comma-separated
        "",  # nothing
        "\\boxed{7}",  # another world's answer
    ]
    assert [reward(b, answer) for b in bad] == [0.0] * len(bad)
    # through the target and back to it: the answer must end where it first reaches the target
    s, t = paths.pairs("easy")[0]
    u = min(succ[t], key=lambda v: paths.graph().distance[v][t])
    through = [*shortest_path(s, t), u, *shortest_path(u, t)]
    assert len(through) <= paths.MAX_HOPS
    assert reward(text(through), f"path:{paths.NODE_NAMES[s]}>{paths.NODE_NAMES[t]}") == 0.0


def test_too_long_answers_are_wrong():
    s, t = paths.pairs("easy")[0]
    succ = paths.graph().successors
    walk, node = [], s
    rng = random.Random(0)
    while len(walk) < paths.MAX_HOPS:  # wander without touching t, then go to t
        options = [v for v in succ[node] if v != t]
        node = rng.choice(options) if options else node
        walk.append(node)
    answer = f"path:{paths.NODE_NAMES[s]}>{paths.NODE_NAMES[t]}"
    assert len(walk + shortest_path(walk[-1], t)) > paths.MAX_HOPS
    assert reward(text(walk + shortest_path(walk[-1], t)), answer) == 0.0


def test_feasible_supervised_walks_always_arrive_and_wandering_ones_sometimes_do_not():
    rng = random.Random(0)
    pool = paths.pairs("train")
    pairs = rng.sample(pool, 300)
    assert all(paths.is_valid_path(paths.sft_walk(s, t, rng, p_wander=0.0), s, t) for s, t in pairs)
    wander = [paths.is_valid_path(paths.sft_walk(s, t, rng, p_wander=1.0), s, t) for s, t in pairs]
    assert 0.05 < sum(wander) / len(wander) < 0.8
    lengths = {len(paths.sft_walk(s, t, rng, p_wander=0.0)) for s, t in pairs}
    assert len(lengths) > 5  # free length: many lengths of answer


def test_make_split_columns_and_determinism():
    a = paths.make_split("medium", 20, seed=3)
    assert a.column_names == ["id", "prompt", "answer", "solution", "data_source", "difficulty"]
    assert a[:] == paths.make_split("medium", 20, seed=3)[:]
    assert set(a["difficulty"]) == {"medium"} and set(a["data_source"]) == {"tiny-paths/medium"}
    assert all(p == ans[len("path:"):] + ":" for p, ans in zip(a["prompt"], a["answer"]))
    assert len(set(a["prompt"])) == 20
    with pytest.raises(ValueError, match="has 60 pairs"):
        paths.make_split("hard", 61)
    with pytest.raises(ValueError, match="unknown split"):
        paths.pairs("expert")


def test_world_registry_and_its_errors():
    assert WORLDS == ("arithmetic", "paths", "countdown") and get_world("paths") is paths
    with pytest.raises(ValueError, match="unknown tiny world 'maze'.*arithmetic, paths"):
        get_world("maze")
    assert reward("23*40=920\n\\boxed{17}", "17") == 1.0  # arithmetic answers still go to the math verifier
    with pytest.raises(ValueError, match="not a path-world answer"):
        paths.parse_answer("path:A-B")


def test_config_names_the_worlds():
    from fr3e.training.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="data.world='maze': use one of arithmetic, paths"):
        load_config("reproduce/configs/tiny-grpo_pp.yaml", ["data.world=maze"])
    assert load_config("reproduce/configs/tiny-grpo_pp.yaml", ["data.world=paths"]).data.world == "paths"


@pytest.mark.slow
def test_grpo_pp_trains_and_evaluates_on_the_path_world(tmp_path):
    """The trainer on `data.world=paths`: its prompts, its verifier, its evaluation splits, its base model."""
    from fr3e.training.config import load_config
    from fr3e.training.trainer import train
    from fr3e.utils.io import read_jsonl

    config = load_config("reproduce/configs/tiny-grpo_pp.yaml", [
        "data.world=paths", "model.base=general", "steps=2", "data.prompts_per_step=4", "data.eval_problems=8",
        "data.eval_n=2", "data.max_response_tokens=24", "grpo.max_refill_rounds=1", "probe_every=0",
        "checkpoint_every=2", "sample_every=1"])
    run = train(config, tmp_path / "run", progress=False, cache_dir=CACHE)
    assert json.loads((run / "config.json").read_text())["model"]["base"] == "general"
    evals = read_jsonl(run / "eval.jsonl")
    assert {r["benchmark"] for r in evals} == {"easy", "medium", "hard"}
    samples = read_jsonl(run / "samples.jsonl")
    assert samples and all(s["answer"] == "path:" + s["prompt"].rstrip(":") for s in samples)
    for t in (t for s in samples for t in s["trajectories"]):  # logged reward = the verifier on the response
        text = "".join(t["tokens"]).replace("</s>", "")
        answer = next(s["answer"] for s in samples if t in s["trajectories"])
        assert reward(text, answer) == t["reward"]
    assert all(0 <= m["reward_mean"] <= 1 for m in read_jsonl(run / "metrics.jsonl"))


@pytest.mark.slow
def test_worldcard_sees_forks_in_the_path_world_and_none_in_arithmetic():
    """The card's numbers on the shipped base models, on a few problems: the path world's responses have forks
    and several correct answers, the arithmetic world's have about one worked solution and a fixed length."""
    from fr3e.evaluation.worldcard import measure
    from fr3e.tasks.warm_start import warm_start

    cards = {w: measure(warm_start("general", cache_dir=CACHE, world=w, progress=False), w, n=8, problems=8,
                        train_prompts=16, max_new_tokens=64 if w == "arithmetic" else 24) for w in ("arithmetic", "paths")}
    paths_card, arith = cards["paths"]["mean"], cards["arithmetic"]["mean"]
    assert paths_card["forks_median"] >= 3 and paths_card["step_entropy"] > 0.5
    assert arith["step_entropy"] < 0.2 and arith["distinct_correct_median"] <= 1
    assert paths_card["length_cv"] > 0.2 > arith["length_cv"]
    again = measure(warm_start("general", cache_dir=CACHE, world="paths", progress=False), "paths", n=8, problems=8,
                    train_prompts=16, max_new_tokens=24)
    assert again["splits"] == cards["paths"]["splits"]  # deterministic in its seed


def test_scorecard_gate_reads_every_line_from_the_card():
    import importlib.util

    spec = importlib.util.spec_from_file_location("scorecard", Path(__file__).resolve().parents[1]
                                                  / "reproduce/worlds/scorecard.py")
    scorecard = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scorecard)

    def card(avg, ent, distinct=3.0):
        split = {"avg": avg, "pass": 0.9, "forks_median": 5.0, "distinct_correct_median": distinct,
                 "length_cv": 0.3, "step_entropy": ent, "mean_length": 10.0}
        return {"splits": {s: dict(split) for s in paths.SPLITS}, "train": {"mixed_groups": 0.7}, "group_size": 8,
                "mean": dict(split)}

    base = card(0.2, 1.0)
    base["splits"]["hard"]["avg"] = 0.1
    full = {"bases": {"general": {"card": base}},
            "grpo_pp": {"3e-4": {"card": card(0.4, 0.4, 1.0), "metrics": [{"clip_high_frac": 0.01}] * 3,
                                 "run_dir": "runs/x", "eval_avg": {"100": {"mean": 0.4}}}}}
    lines = {line.split(":")[0]: ok for line, ok, _ in scorecard.gate(full)}
    assert all(lines.values()), lines
    full["grpo_pp"]["3e-4"]["card"]["mean"]["avg"] = 0.3  # +10 points only
    assert not dict((line.split(":")[0], ok) for line, ok, _ in scorecard.gate(full))["RL moves it"]
    assert "| RL moves it" in scorecard.render({**full, "bases": {"general": {
        "card": base, "warm_start": {"config": {"steps": 1}, "num_parameters": 1, "final_loss": 0.5}}}})
