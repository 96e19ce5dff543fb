"""The nightly scan's daily report: one self-contained HTML page per local day."""

from .day import CaptureFile, DayReport, build_day_report, write_report
from .html import render_html

__all__ = ["CaptureFile", "DayReport", "build_day_report", "render_html", "write_report"]
