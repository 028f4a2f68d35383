"""FR3E inside a training loop of one's own: the tiny path-world model, the HF engine and `fr3e.explore`.

    python examples/custom_loop.py --steps 60        # CPU, about 1 s a step

Each step: first return, the policy's entropy at every response token, `fr3e.explore` (anchors → states →
continuations → values → α → advantages), one policy-gradient step. Prints held-out accuracy before and after.
"""
import argparse

import torch
from transformers import AutoModelForCausalLM

import fr3e
from fr3e.data.paper import encode_prompt
from fr3e.engines.hf import HFEngine
from fr3e.tasks import paths
from fr3e.tasks.tokenizer import load_tokenizer
from fr3e.tasks.warm_start import warm_start
from fr3e.tasks.worlds import reward as verify
from fr3e.training.policy import pad_right, token_logprobs

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=60)
parser.add_argument("--prompts", type=int, default=8)
args = parser.parse_args()
MAX_NEW = 24  # the longest valid path is 18 tokens

model_dir = warm_start("general", world="paths", progress=False)  # the shipped base model, no download
tok, model = load_tokenizer(model_dir), AutoModelForCausalLM.from_pretrained(model_dir)
engine, opt = HFEngine(model, tok), torch.optim.AdamW(model.parameters(), lr=3e-4)
train = paths.make_split("train", 512)


def reward(prompt, response_ids):  # the verifier reads the text: 1.0 for a valid path from s to t
    return verify(tok.decode(response_ids, skip_special_tokens=True), prompt.answer)


def held_out_accuracy(split="medium", problems=64, n=8):  # avg@n on evaluation problems (never trained on)
    items = [fr3e.PromptItem(i, encode_prompt(tok, r["prompt"]), r["answer"], r["prompt"])
             for i, r in enumerate(paths.make_split(split, problems))]
    outs = engine.generate([p.ids for p in items], n=n, max_new_tokens=MAX_NEW, seed=7)
    return sum(reward(p, c.token_ids) for p, cs in zip(items, outs) for c in cs) / (problems * n)


before = held_out_accuracy()
for step in range(args.steps):
    rows = [train[(step * args.prompts + i) % len(train)] for i in range(args.prompts)]
    prompts = [fr3e.PromptItem(i, encode_prompt(tok, r["prompt"]), r["answer"], r["prompt"]) for i, r in enumerate(rows)]
    # 1. First return: 4 samples per prompt; keep one right and one wrong.
    base = engine.generate([p.ids for p in prompts], n=4, max_new_tokens=MAX_NEW, seed=step)
    kept, accuracy = [], []
    for p, comps in zip(prompts, base):
        rewards = [reward(p, c.token_ids) for c in comps]
        accuracy += rewards
        kept += [(p, 4 * p.prompt_id + i, comps[i].token_ids, rewards[i]) for i in fr3e.select_base_trajectories(rewards)]
    # 2. The policy's entropy at every response token (targets are shifted by one: token t sits at t - 1).
    ids, mask = pad_right([p.ids + resp for p, _, resp, _ in kept], tok.pad_token_id)
    with torch.no_grad():
        _, ent = token_logprobs(model, ids, mask, want_entropy=True)
    trajectories = [fr3e.Trajectory(p, tid, resp, r, ent[b, len(p.ids) - 1: len(p.ids) - 1 + len(resp)])
                    for b, (p, tid, resp, r) in enumerate(kept)]
    # 3. Anchors → states → 8 continuations per state → values → α → advantages.
    works = fr3e.explore(prompts, trajectories, lambda prefixes, n, s=step: engine.generate(prefixes, n, MAX_NEW, seed=1000 + s),
                         reward, continuations_per_state=8, num_anchors=2, eos_token_ids=engine.eos_token_ids)
    rollouts = [r for w in works for r in w.rollouts if r.advantage != 0]  # groups without signal teach nothing
    if rollouts:  # 4. One clipped policy-gradient step on the continuation tokens (on-policy: ratio 1).
        ids, mask = pad_right([r.prefix_ids + r.completion_ids for r in rollouts], tok.pad_token_id)
        logp, _ = token_logprobs(model, ids, mask)
        trained = torch.zeros_like(logp, dtype=torch.bool)
        for b, r in enumerate(rollouts):
            trained[b, len(r.prefix_ids) - 1: len(r.prefix_ids) - 1 + len(r.completion_ids)] = True
        loss, _ = fr3e.policy_loss(logp, logp.detach(), torch.tensor([r.advantage for r in rollouts]), trained)
        opt.zero_grad(), loss.backward(), opt.step()
        engine.sync_weights(model)  # the engine samples from the updated weights from now on
    if (step + 1) % 10 == 0:
        values = [v for w in works for v in w.values.values()]
        print(f"step {step + 1:3d}  first-return accuracy {sum(accuracy) / len(accuracy):.2f}  states {len(values)}  "
              f"mean V(S) {sum(values) / len(values):.2f}  trained rollouts {len(rollouts)}", flush=True)
print(f"held-out avg@8 on 64 medium problems: {before:.3f} before, {held_out_accuracy():.3f} after {args.steps} steps")
