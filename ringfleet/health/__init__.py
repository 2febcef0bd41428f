"""ringfleet.health: the gate every placed node passes before a run's ranks start (gate.py),
and the `check` command and `run`'s fault-tolerance options (commands.py)."""
