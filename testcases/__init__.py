"""Declarative interop test cases (one module per theme): what to set up and what to check in the pcaps."""
