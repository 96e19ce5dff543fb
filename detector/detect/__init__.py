"""Detection: the rules (and, later, the model) over per-host traffic."""
