"""Reference servers the benchmark compares the project against.

Both speak the protocol subset the benchmark client uses (welcome, subscribe, event) and read the
same TCP JSON-lines ingest as the project's runner, so one client and one feeder drive all three.
"""
