"""Detection over per-host traffic: the rules (rules.py), the isolation-forest
model (model/, trained by train.py), and the scan that runs them (scan.py)."""
