"""Command-line interface: argument parsing only; each subcommand calls one library function."""
