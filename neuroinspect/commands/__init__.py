"""One module per ``neuroinspect`` subcommand; see :mod:`neuroinspect.cli`."""
