"""Subcommands of the `edgevoice` console script; each module has `register(parser)`."""
