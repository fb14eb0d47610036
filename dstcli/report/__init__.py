"""Reporting: training plots and result tables from run folders (no torch)."""
