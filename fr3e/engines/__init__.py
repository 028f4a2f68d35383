"""Rollout engines behind one interface (see `fr3e.engines.base.Engine`)."""

from fr3e.engines.base import Completion, Engine, EngineCounters

__all__ = ["Completion", "Engine", "EngineCounters"]
