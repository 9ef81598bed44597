"""Triggers: deferrable waits and event triggers for AssetWatchers."""
