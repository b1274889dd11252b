"""Argument parsing and one module per subcommand: the only place that prints.
May import every package, the lab included (`scanner lab serve`, the demo)."""
