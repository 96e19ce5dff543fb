"""The nightly scan's daily report: one self-contained HTML page per local day.

``day`` gathers the day's figures (build_day_report); ``html`` renders and
writes the page (render_html, write_report).
"""

from .day import CaptureFile, DayReport, build_day_report
from .html import render_html, write_report

__all__ = ["CaptureFile", "DayReport", "build_day_report", "render_html", "write_report"]
