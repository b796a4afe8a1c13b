"""What every stage reads: the run configuration, the run directory, the data, the metrics' names, errors."""
