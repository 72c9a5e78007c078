"""Measuring the referee: repeatability over shifted starts and the reliability of its confidence."""
