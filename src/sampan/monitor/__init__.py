"""The per-container monitor: stdio, logs, exit status, restart policy."""
