"""One module per subcommand: argparse wiring only at import, the work imported inside main()."""
