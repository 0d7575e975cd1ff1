"""Incidents: alerts grouped by correlation, their lifecycle, significance, clocks and reports."""
