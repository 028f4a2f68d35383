"""Layer 8: every entry point and its error handling.

`command` is the `fr3e` console script; each other module is one subcommand (`fr3e <name>` =
`python -m fr3e.cli.<name>`) whose `main(argv)` parses and checks its arguments before any work starts and
turns user errors into one line with exit status 2 (`common.run_cli`).
"""
