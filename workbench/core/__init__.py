"""Headless engine of the workbench. Nothing in this package imports Qt."""
