"""The `vitkit` command line: one module per subcommand, assembled in `main`."""
