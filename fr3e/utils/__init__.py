"""Shared plumbing with no knowledge of the method: atomic files, seeds, the user-error type."""
