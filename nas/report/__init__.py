"""The report: selection of the best candidate under budgets, plots, markup and the report's sections."""
