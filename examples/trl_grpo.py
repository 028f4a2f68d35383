"""FR3E's exploration inside TRL's `GRPOTrainer`, through its `rollout_func` and reward-function hooks.

    python examples/trl_grpo.py --steps 2        # CPU, the tiny path-world model, a few seconds a step

Per training prompt, `rollout_func` runs the first return (4 samples; keep one right and one wrong), the
policy's entropy on the kept responses and `fr3e.explore` (anchors → states → M continuations per state →
values → α → advantages). It hands TRL one group of G = M·(1 + 2K) rows per prompt: the continuations of
every state, each with its state's prefix (prompt ⊕ response[:anchor]) as its prompt_ids, then padding rows
up to G that carry no loss (env_mask 0). The reward TRL optimises is each row's FR3E advantage; with
scale_rewards="none" TRL subtracts the group mean, which is 0, so TRL's advantage is FR3E's.
examples/README.md says what is exact, what differs and why the padding is needed.
"""
import argparse
import tempfile

import torch
from transformers import AutoModelForCausalLM
from trl import GRPOConfig, GRPOTrainer

import fr3e
from fr3e.data.paper import encode_prompt
from fr3e.engines.hf import HFEngine
from fr3e.tasks import paths
from fr3e.tasks.tokenizer import load_tokenizer
from fr3e.tasks.warm_start import warm_start
from fr3e.tasks.worlds import reward as verify
from fr3e.training.policy import pad_right, token_logprobs

MAX_NEW, G_BASE = 24, 4  # the longest valid path is 18 tokens; first-return samples per prompt
FIELDS = ("prompt_ids", "completion_ids", "logprobs", "env_mask", "fr3e_advantage", "fr3e_reward")


def make_rollout_func(tok, answers, m, k, log=None):
    """TRL's `rollout_func(prompts, trainer)` running FR3E; one TRL group of m·(1 + 2k) rows per prompt.

    answers: prompt text → gold answer (TRL passes a rollout_func the prompts only). log: a list that gets each
    call's (output, works), for inspection."""
    group = m * (1 + 2 * k)  # the most states a prompt can have: S_0, and k anchors on each of ≤ 2 responses

    def reward(prompt, response_ids):  # the verifier reads the text: 1.0 for a valid path from s to t
        return verify(tok.decode(response_ids, skip_special_tokens=True), prompt.answer)

    def rollout_func(prompts, trainer):
        # TRL's sampler hands over each prompt `num_generations` times in a row; FR3E needs each prompt once.
        if len(prompts) % group or any(prompts[i] != prompts[i - i % group] for i in range(len(prompts))):
            raise ValueError(f"expected whole runs of {group} copies of each prompt: set num_generations={group} "
                             "and make every process's generation batch a multiple of it")
        model = trainer.accelerator.unwrap_model(trainer.model)
        engine = HFEngine(model, tok)  # shares the trainer's module: samples from the current weights
        items = [fr3e.PromptItem(i, encode_prompt(tok, p), answers[p], p) for i, p in enumerate(prompts[::group])]
        # 1. First return: G_BASE samples per prompt, rewarded; keep one right and one wrong.
        kept = []
        for p, comps in zip(items, engine.generate([p.ids for p in items], n=G_BASE, max_new_tokens=MAX_NEW)):
            rewards = [reward(p, c.token_ids) for c in comps]
            kept += [(p, G_BASE * p.prompt_id + i, comps[i].token_ids, rewards[i])
                     for i in fr3e.select_base_trajectories(rewards)]
        # 2. The policy's entropy at every kept response token (the target of position t sits at t - 1).
        ids, mask = pad_right([p.ids + resp for p, _, resp, _ in kept], tok.pad_token_id)
        with torch.no_grad():
            _, ent = token_logprobs(model, ids, mask, want_entropy=True)
        trajectories = [fr3e.Trajectory(p, tid, resp, r, ent[b, len(p.ids) - 1: len(p.ids) - 1 + len(resp)])
                        for b, (p, tid, resp, r) in enumerate(kept)]
        # 3. Anchors → states → m continuations per state (rewarded on prefix ⊕ continuation) → V, α, advantages.
        works = fr3e.explore(items, trajectories, lambda prefixes, n: engine.generate(prefixes, n, MAX_NEW), reward,
                             continuations_per_state=m, num_anchors=k, eos_token_ids=engine.eos_token_ids)
        # 4. One TRL group per prompt: its continuations, whose prompt is their state's prefix, then padding.
        out = {f: [] for f in FIELDS}
        for p, w in zip(items, works):
            signal = {key: max(r) > min(r) for key, r in w.rewards.items()}  # all-equal states teach nothing
            rows = [(r.prefix_ids, r.completion_ids, r.engine_logprobs, [int(signal[r.key])] * len(r.completion_ids),
                     r.advantage, r.reward) for r in w.rollouts]
            assert len(rows) <= group, f"{len(w.states)} states do not fit a group of {group} rows"
            rows += [(p.ids, [engine.eos_token_id], [0.0], [0], 0.0, None)] * (group - len(rows))
            for row in rows:
                for f, value in zip(FIELDS, row):
                    out[f].append(value)
        if log is not None:
            log.append((out, works))
        return out

    return rollout_func


def fr3e_advantage(completions, fr3e_advantage, **kwargs):
    """The 'reward' TRL optimises: each row's FR3E advantage (0 on padding), already zero-mean in its group."""
    return list(fr3e_advantage)


def verifier_reward(completions, fr3e_reward, **kwargs):
    """Logged only (weight 0): the verifier's reward of prefix ⊕ continuation; None (not counted) on padding."""
    return list(fr3e_reward)


def build_trainer(output_dir, steps=2, prompts=2, m=4, k=2, lr=3e-4, seed=0, log=None):
    """A CPU `GRPOTrainer` on the tiny path-world model whose rollouts and advantages are FR3E's."""
    model_dir = warm_start("general", world="paths", progress=False)  # the shipped base model, no download
    tok, model = load_tokenizer(model_dir), AutoModelForCausalLM.from_pretrained(model_dir)
    data = paths.make_split("train", 512).select_columns(["prompt", "answer"])
    group = m * (1 + 2 * k)
    args = GRPOConfig(
        output_dir=output_dir, num_generations=group, per_device_train_batch_size=prompts * group,
        max_completion_length=MAX_NEW, max_steps=steps, learning_rate=lr, lr_scheduler_type="constant",
        loss_type="dapo", epsilon=0.2, epsilon_high=0.28, beta=0.0, scale_rewards="none", reward_weights=[1.0, 0.0],
        temperature=1.0, top_p=1.0, use_vllm=False, use_cpu=True, bf16=False, report_to=[], logging_steps=1,
        save_strategy="no", disable_tqdm=True, dataloader_num_workers=0, seed=seed)
    return GRPOTrainer(model=model, reward_funcs=[fr3e_advantage, verifier_reward], args=args, train_dataset=data,
                       processing_class=tok,
                       rollout_func=make_rollout_func(tok, dict(zip(data["prompt"], data["answer"])), m, k, log))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=2, help="prompts per step")
    parser.add_argument("--m", type=int, default=4, help="continuations per state (M)")
    parser.add_argument("--k", type=int, default=2, help="anchors per kept response (K)")
    cli = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fr3e-trl-") as tmp:
        trainer = build_trainer(tmp, cli.steps, cli.prompts, cli.m, cli.k)
        trainer.train()  # TRL prints its logs: rewards/verifier_reward/mean is the continuations' accuracy
    print(f"done: {trainer.state.global_step} GRPOTrainer steps on FR3E's rollouts and advantages")
