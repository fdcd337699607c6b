"""One module per ``brachycryo`` subcommand; each exposes ``register(subparsers)``."""
