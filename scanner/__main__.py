"""python -m scanner -> cli.main()."""

from scanner.cli import main

raise SystemExit(main())
