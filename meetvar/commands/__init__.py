"""The command line's subcommands beyond the core ones in meetvar.cli: each module adds its own
parsers (``register``) and runs them."""
