"""Deployment declarations: schedules, triggers, parameters, the work pool."""
