"""Sensors (deferrable waits). Filled by later capabilities."""
