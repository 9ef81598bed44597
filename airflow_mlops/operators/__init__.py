"""Operators: one module per MLOps capability."""
