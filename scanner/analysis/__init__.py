"""Statistics, distributions, groups, compare: pure functions over a scan's datasets.
May import the packages below it (model ... scan); prints nothing."""
