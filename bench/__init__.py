"""Fan-out benchmark: the project's runner against two reference WebSocket servers.

Run it with ``python -m bench`` from the repository root; docs/performance.md has the method.
"""
