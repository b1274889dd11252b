"""Ground truth: what a correct scan of a lab population must find, written as Parquet.
May import scanner.lab.population and the scanner packages the lab may (never its parsers)."""
