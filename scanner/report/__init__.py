"""The HTML report and its charts, with numbers from scanner.analysis.
May import the packages below it (model ... analysis); prints nothing."""
