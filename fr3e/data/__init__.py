"""Data and models from outside the package."""
