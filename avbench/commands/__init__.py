"""Bodies of the larger CLI commands (imported only when the command runs)."""
