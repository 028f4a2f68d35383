"""Saving and resuming a run (`Resumable`, mixed into `fr3e.training.trainer.Trainer`): checkpoints written
atomically with a manifest, resuming from the newest one that verifies, a stop at the next step boundary on
SIGTERM / SIGINT, and the final model with its card.

Every method here is entered by every process: saving and loading sharded state and gathering FSDP weights
are collectives. The integrity checks themselves are `fr3e.training.checkpoint`.
"""

from __future__ import annotations

import logging

from fr3e.training.checkpoint import usable_checkpoints, write_manifest
from fr3e.training.errors import TrainingError
from fr3e.training.modelcard import write_model_card
from fr3e.utils.io import atomic_write_json, read_json

logger = logging.getLogger(__name__)


class Resumable:
    """Needs the trainer's accelerator, run directory, model, engine, stream and step counters."""

    def save_checkpoint(self) -> None:
        """Write a checkpoint of every process's state: into a temporary directory, then a manifest of
        checksums (last), then renamed into place. A write that fails (disk full, permission) stops the run
        with the previous checkpoint intact; a crash mid-write leaves a directory without a valid manifest,
        which resuming skips."""
        self.accelerator.wait_for_everyone()
        tmp = self.run.checkpoints / f".tmp-step-{self.step_index:06d}"
        if self.accelerator.is_main_process and tmp.exists():
            import shutil

            shutil.rmtree(tmp)
        self.accelerator.wait_for_everyone()
        try:
            self.accelerator.save_state(str(tmp))
            self.accelerator.wait_for_everyone()  # every process has written its RNG state into tmp
            if self.accelerator.is_main_process:
                atomic_write_json(tmp / "trainer_state.json", {
                    "step": self.step_index, "stream_position": self.stream.position, "wall": self.wall,
                    "engine": self.engine.counters.as_dict(), "entropy_control": self.entropy_control.state()})
                write_manifest(tmp)
                self.run.commit_checkpoint(tmp, self.step_index)
        except OSError as exc:
            latest = usable_checkpoints(self.run.checkpoints)[0]
            kept = f"the previous checkpoint ({latest[0].name}) is intact" if latest else "no earlier checkpoint exists"
            raise TrainingError(f"step {self.step_index}: could not write the checkpoint under {self.run.checkpoints} "
                                f"({exc.strerror or exc}); {kept}. Free space or fix the permissions, then run the "
                                "same command to resume.") from exc
        self.accelerator.wait_for_everyone()

    def load_checkpoint(self) -> bool:
        """Resume from the newest checkpoint whose manifest verifies (skipping, with a warning, any newer one
        that is truncated or corrupted); without one, start over with empty logs."""
        choice = []
        if self.accelerator.is_main_process:
            good, skipped = usable_checkpoints(self.run.checkpoints)
            for line in skipped:
                logger.warning("skipping checkpoint %s", line)
            choice = [good[0].name] if good else []
        choice = self._gather(choice)  # the main process's choice, on every process
        if not choice:
            # A run killed before its first checkpoint starts over: rows it logged would be written twice.
            if self.accelerator.is_main_process:
                self.run.truncate_logs(0)
            self.accelerator.wait_for_everyone()
            return False

        ckpt = self.run.checkpoints / choice[0]
        state = read_json(ckpt / "trainer_state.json")
        self.accelerator.load_state(str(ckpt))
        self.step_index = state["step"]
        self.stream.position = state["stream_position"]
        self.wall = state.get("wall", 0.0)
        self.entropy_control.load(state.get("entropy_control"))
        self.engine.sync_weights(self.accelerator.unwrap_model(self.model))
        if self.accelerator.is_main_process:
            self.run.truncate_logs(self.step_index)
        self.accelerator.wait_for_everyone()
        logger.info("resumed %s from step %d", self.run.path, self.step_index)
        return True

    def _install_stop_handlers(self) -> dict:
        """SIGTERM / SIGINT ask for a stop at the next step boundary (a second Ctrl-C stops at once)."""
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return {}

        def ask(signum, frame):
            self._stop_signal = signal.Signals(signum).name
            signal.signal(signum, previous[signum])  # a second signal acts at once
            logger.warning("%s received: stopping after this step with a checkpoint", self._stop_signal)

        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        for sig in previous:
            signal.signal(sig, ask)
        return previous

    def _stop_requested(self) -> bool:
        """Whether any process was asked to stop (every process calls this once per step: a reduction)."""
        return self._sum(1.0 if self._stop_signal else 0.0) > 0

    def save_model(self, evals: list[dict] | None = None) -> None:
        """Write the final policy (full weights), tokenizer and model card (README.md, with `evals`, the
        final evaluation rows) to the run's model directory.

        Every process takes part: gathering FSDP-sharded weights into one state dict is a collective. The
        main process writes the files.
        """
        state = self.accelerator.get_state_dict(self.model)
        policy = self.accelerator.unwrap_model(self.model)
        if self.accelerator.is_main_process:
            if self.compute_dtype is not None:  # fp32 master weights: saved in the recipe's dtype, as loaded
                state = {k: v.to(self.compute_dtype) if v.is_floating_point() else v for k, v in state.items()}
            policy.save_pretrained(self.run.model_dir, state_dict=state, safe_serialization=True)
            self.tokenizer.save_pretrained(self.run.model_dir)
            write_model_card(self.run.model_dir, self.config, evals or [])
        self.accelerator.wait_for_everyone()
