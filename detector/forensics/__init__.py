"""From an alert back to the traffic: carve its packets (``carve``), show a
host's night minute by minute (``timeline``)."""
