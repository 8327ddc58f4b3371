"""Conveyor: a durable, event-sourced workflow queue for webhook-driven work."""
