"""Why a training run stops before its last step."""


class TrainingError(RuntimeError):
    """The run cannot continue (non-finite loss or reward, ...); the message names the step and cause."""


class TrainingInterrupted(TrainingError):
    """SIGTERM / Ctrl-C: the run stopped cleanly at a step boundary with a checkpoint; rerun to resume."""
