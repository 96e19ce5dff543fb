"""Alerts: the record, its ECS form, and where alerts are written."""

from .record import SEVERITY_NAMES, Alert, local_time, to_ecs
from .sinks import ALERT_FORMATS, write_alerts

__all__ = ["ALERT_FORMATS", "SEVERITY_NAMES", "Alert", "local_time", "to_ecs", "write_alerts"]
