"""CPU dress rehearsal of `make reproduce-table1 PROFILE=paper`: the paper path with only sizes changed.

    python -m fr3e.cli.rehearsal [--quick] [--dir runs/rehearsal] [--fresh]       (make rehearse-table1)

What runs, in order, each step a subprocess with a hard timeout and a progress line:

1. **Fixture model** (`build_fixture_model`, cached under `runs/cache/rehearsal/<hash>/`): a random-initialised
   Qwen2-architecture decoder (hidden 64, 2 layers, 4 heads, 2 KV heads) with a byte-level BPE tokenizer
   trained here on the fixture texts (`tests/fixtures/data/`), the special tokens `<|endoftext|>`,
   `<|im_start|>`, `<|im_end|>` and a Qwen2.5-style chat template; a short SFT warm start on chat-formatted
   fixture problems (target "The answer is \\boxed{a}.<|im_end|>") stops once sampled accuracy at T = 1 on
   the training prompts is inside `[accuracy_low, accuracy_high]`, so that rollout groups are mixed.
   EOS layout of the Qwen2.5 *base* models: `config.json`, `generation_config.json` and
   the tokenizer name `<|endoftext|>` only, while a chat turn ends with `<|im_end|>`.
2. **Hub id** (`install_hub_cache`, `verify_hub_loading`): the model is placed in a Hugging Face hub cache
   (`<dir>/hf/hub/models--<org>--<name>/{refs/main, snapshots/<commit>/}`) and every later step runs with
   `HF_HOME=<dir>/hf HF_HUB_OFFLINE=1`, so `AutoModelForCausalLM.from_pretrained("<org>/<name>")` resolves it
   exactly as `fr3e.training.trainer.load_policy` resolves `Qwen/Qwen2.5-7B` on a GPU node.
3. **Training runs** with `accelerate launch` on 2 gloo ranks (`reproduce/accelerate/*-cpu-2proc.yaml`) and
   the Table 1 recipes `reproduce/configs/table1/qwen2.5-7b-{fr3e,grpo_pp}.yaml`, overriding sizes only
   (:func:`size_overrides`): FR3E under FSDP2, killed with SIGKILL (launcher and every rank) once
   `metrics.jsonl` has 2 steps and a checkpoint exists, and relaunched (it must resume and finish); GRPO++ under DDP; FR3E with `rehearsal_zero_reward_rank=1`. The
   Table 1 runs are launched with the command `fr3e.study.report.ensure_runs` builds (plus `--data name=path` for
   the fixture files), in the directories it expects, so the notebook reuses them.
4. **Base-model rows**: `fr3e.study.report.base_evals` on the fixture hub id with the recipe's evaluation settings.
5. **Notebook** `notebooks/02_table1.ipynb` through `fr3e.study.reproduction.run_notebook` with the paper profile's
   parameters (`fr3e.study.reproduction.full_parameters("paper")`), pointed at the rehearsal directory.

`--quick` (the test in `make test`): one FSDP FR3E run of 4 steps with the zero-reward rank, the kill and
the resume, evaluation on 2 benchmarks at n = 2, no base rows, no notebook.

A step that fails, hangs (timeout) or silently does something else (one rank instead of two, DDP instead of
FSDP) is reported with its log excerpt; later steps that need its output are skipped. Exit status 1 if
any step failed. The record of every step goes to `<dir>/rehearsal.json`, its log to `<dir>/logs/`.

What it does not rehearse: vLLM (`rollout.engine=hf` here), CUDA, bf16 and real model sizes.
"""
