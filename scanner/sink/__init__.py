"""Writing and reading a scan's datasets: Arrow schema, rows, part files, commits, manifest.
May import scanner.model and scanner.config."""
