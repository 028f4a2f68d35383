"""Process-group plumbing for the trainer: one Accelerator, with timeouts, on GPUs and in the CPU rehearsal.

Not paper maths: this module only decides how the processes of a run talk to each other.

- Every collective waits at most `distributed_timeout_s` seconds (a config field) instead of torch's
  default 600 s, so a hang fails the run with a timeout error (the CPU rehearsal uses seconds).
- The LR scheduler steps once per optimizer step (`step_scheduler_with_optimizer=False`): accelerate
  otherwise steps a prepared scheduler once per process, which shrinks a warm-up by the world size.
- FSDP on CPU: accelerate turns an FSDP launch config into FSDP only on accelerators; on CPU it falls back
  to DDP over gloo without a word. The CPU rehearsal of the paper path (`make rehearse-table1`) must run
  the FSDP2 code path itself (sharded parameters, a collective in every forward, gathered state dicts), so
  when the launcher asked for FSDP (`ACCELERATE_USE_FSDP=true`) and no GPU is present, the accelerator
  state is switched to FSDP with the plugin the launch config describes. `accelerator.prepare` then shards
  the model with accelerate's own FSDP2 code, over gloo.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta

import torch

logger = logging.getLogger(__name__)


def fsdp_requested() -> bool:
    """True when `accelerate launch` was given an FSDP config (it exports ACCELERATE_USE_FSDP=true)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def make_accelerator(timeout_s: int, log_with: list[str] | None = None, logging_dir: str | os.PathLike | None = None):
    """The run's Accelerator: collective timeout `timeout_s`, scheduler stepped once per optimizer step,
    FSDP over gloo when an FSDP launch runs on CPU (see module docstring); `log_with` names its dashboards
    (`fr3e.training.tracking.log_with`), which write under `logging_dir`."""
    from accelerate import Accelerator, InitProcessGroupKwargs
    from accelerate.utils import ProjectConfiguration

    on_cpu = not torch.cuda.is_available()
    tracking = {}
    if log_with:
        tracking = {"log_with": log_with, "project_config": ProjectConfiguration(
            project_dir=str(logging_dir), logging_dir=str(logging_dir))}
    accelerator = Accelerator(cpu=on_cpu, step_scheduler_with_optimizer=False,
                              kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(seconds=timeout_s))],
                              **tracking)
    if on_cpu and fsdp_requested() and accelerator.num_processes > 1:
        _enable_cpu_fsdp(accelerator)
    return accelerator


def _enable_cpu_fsdp(accelerator) -> None:
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    plugin = FullyShardedDataParallelPlugin()  # reads the FSDP_* variables the launch config exported
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    accelerator.state.distributed_type = DistributedType.FSDP
    accelerator.state.fsdp_plugin = plugin
    if accelerator.is_main_process:
        logger.info("FSDP%s over gloo on CPU (rehearsal of the GPU path): %d processes",
                    plugin.fsdp_version, accelerator.num_processes)


def shutdown() -> None:
    """Tear the default process group down once every process is here (a no-op in a single process).

    A process that exits with a gloo group still alive can abort in the group's destructor ("terminate called
    without an active exception", SIGABRT) after its work is done, which a launcher reports as a failed run.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
