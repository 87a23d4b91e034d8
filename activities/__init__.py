"""Saga steps: one module per step, its do and undo side by side."""
