import pytest

from fr3e.method.branching import SHARED, StateKey, build_states, value_chains


def test_states_are_token_exact_prefixes():
    prompt = [10, 11]
    resp = [1, 2, 3, 4, 5]
    states = build_states(7, prompt, [(0, resp, [1, 3, -1])])
    # S_0 = prompt; S_1 = prompt ⊕ resp[:1]; S_2 = prompt ⊕ resp[:3]; the -1 pad is ignored
    assert [s.prefix_ids for s in states] == [[10, 11], [10, 11, 1], [10, 11, 1, 2, 3]]
    assert [s.key for s in states] == [StateKey(7, SHARED, 0), StateKey(7, 0, 1), StateKey(7, 0, 2)]
    assert [s.anchor for s in states] == [0, 1, 3]
    assert states[2].chain == (StateKey(7, SHARED, 0), StateKey(7, 0, 1), StateKey(7, 0, 2))


def test_s0_shared_between_trajectories():
    states = build_states(0, [5], [(3, [1, 2, 3], [1]), (4, [6, 7, 8], [2])])
    s0 = [s for s in states if s.key.trajectory_id == SHARED]
    assert len(s0) == 1 and len(states) == 3
    chains = value_chains(states)
    assert chains == {3: [StateKey(0, SHARED, 0), StateKey(0, 3, 1)], 4: [StateKey(0, SHARED, 0), StateKey(0, 4, 1)]}


def test_trajectory_without_anchor_has_no_chain_entry_but_s0_exists():
    states = build_states(0, [5], [(1, [9], [-1, -1])])
    assert len(states) == 1 and value_chains(states) == {}


@pytest.mark.parametrize("trajs,msg", [
    ([(0, [1, 2], [1]), (0, [1, 2], [1])], "repeated"),
    ([(0, [1, 2, 3], [2, 1])], "ascending"),
    ([(0, [1, 2], [5])], "past the end"),
])
def test_bad_input(trajs, msg):
    with pytest.raises(ValueError, match=msg):
        build_states(0, [1], trajs)
