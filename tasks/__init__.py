"""Prefect tasks: read, validate, one core call, write, return a handle."""
