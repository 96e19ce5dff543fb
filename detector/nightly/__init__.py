"""Scheduled scans of rotated captures: find new files, finish each day (docs/nightly.md)."""
