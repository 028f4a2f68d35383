"""The Countdown candidate world: its problems, its search traces and its verifier."""

import random

import pytest

from fr3e.tasks import countdown
from fr3e.tasks.worlds import get_world, reward


def test_every_problem_is_solvable_and_its_split_counts_the_attempts_that_work():
    splits = countdown.problems()
    for split, keys in splits.items():
        assert keys, split
        for key in keys[:200]:
            numbers, target = countdown.parse_key(key)
            hits = [text for text, result in countdown.attempts(numbers) if result == target]
            assert hits and all(countdown.is_solution(h, numbers, target) for h in hits)
            if split != "train":
                assert split == ("easy" if len(hits) >= 3 else "medium" if len(hits) == 2 else "hard")
    held_out = {k for s in countdown.SPLITS for k in splits[s]}
    assert not held_out & set(splits["train"])  # train and evaluation never share a problem
    assert all(countdown.is_eval_problem(k) for k in held_out)


def test_the_verifier_checks_the_last_attempt_only_and_all_of_it():
    answer = "countdown:4 7 9>19"
    assert reward("9+7=16,16+4=20x;7*4=28,28-9=19=", answer) == 1.0
    assert reward("7*4=28,28-9=19=", answer) == 1.0
    assert reward("4*7=28,28-9=19=", answer) == 1.0  # either operand order
    assert reward("7*4=28,28-9=19=;9+7=16,16+4=20x", answer) == 0.0  # the last attempt failed
    assert reward("7*4=28,28-9=19", answer) == 0.0  # no success mark
    assert reward("7*4=28,28-9=18=", answer) == 0.0  # wrong arithmetic
    assert reward("7*4=28,29-9=20=", answer) == 0.0  # the intermediate result not carried
    assert reward("7*4=28,28-8=20=", answer) == 0.0  # a number the problem does not have
    assert reward("7*7=49,49-30=19=", answer) == 0.0
    assert reward("19=", answer) == 0.0 and reward("", answer) == 0.0
    for junk in ("7*4=28,28-9=--19=", "7*4=28,28-9=1-9=", "7*4=28,28--9=19=", "7*4=28,,28-9=19=", "٧*4=28,28-9=19="):
        assert reward(junk, answer) == 0.0  # malformed: scored 0, never an exception
    with pytest.raises(ValueError, match="not a Countdown answer"):
        countdown.reward("1+1=2,2+2=4=", "path:A>B")


def test_search_traces_stop_at_the_first_success_or_give_up_within_four_attempts():
    rng = random.Random(0)
    keys = countdown.problems()["train"]
    outcomes = []
    for i in range(400):
        p = countdown.make_problem(keys[i % len(keys)], rng)
        tries = p.solution.split(";")
        assert 1 <= len(tries) <= countdown.MAX_ATTEMPTS
        assert all(t.endswith("x") for t in tries[:-1]) and tries[-1][-1] in "x="
        outcomes.append(reward(p.solution, p.answer))
        assert outcomes[-1] == (tries[-1].endswith("="))
    assert 0.1 < sum(outcomes) / len(outcomes) < 0.5  # most traces give up: the base policy has headroom
    assert countdown.solution_key("9+7=16,16+4=20x;7*4=28,28-9=19=") == "7*4=28,28-9=19"


def test_the_world_has_the_surface_of_the_others_and_no_study_recipes():
    from fr3e.study.reproduction import results_dir_of

    world = get_world("countdown")
    ds = world.make_split("medium", 5)
    assert ds.column_names == ["id", "prompt", "answer", "solution", "data_source", "difficulty"]
    assert world.make_split("medium", 5)["prompt"] == ds["prompt"]  # deterministic
    assert all(p.endswith(":") and ">" in p for p in ds["prompt"])
    with pytest.raises(ValueError, match="scorecard only"):
        results_dir_of("countdown")
