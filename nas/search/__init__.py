"""The search: candidate evaluation, records, locks, latency tables, the optuna engine; the ray engine in ``ray``."""
