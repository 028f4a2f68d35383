"""fr3e: a reference implementation and reproduction of FR3E (arXiv 2507.07017).

FR3E ("First Return, Entropy-Eliciting Explore") finds the high-entropy tokens of a sampled solution,
re-samples many continuations from the prefixes that end there, measures each prefix's empirical value
and scales the advantages by the change in value. The maths lives in small pure modules
(`entropy`, `anchors`, `branching`, `values`, `modulation`, `advantages`, `losses`, `sampling`); the
`trainer` strings them together; `tasks` holds the embedded CPU-sized world used by the `tiny` profile.
"""

__version__ = "0.1.0"
