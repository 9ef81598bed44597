"""A user's own code, as a team would bring it: networks for the generic tabular data module."""
