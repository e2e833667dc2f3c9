"""Tools around trained runs: report pages, plots, evaluation."""
