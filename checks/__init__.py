"""Acceptance checks, run by hand from the repository root (``python -m checks.<name>``).

Each drives a real ``portraitsr serve`` (or a GPU machine) the way a user or an operator would,
prints one report, and exits 1 when a bar it checks is missed: ``hardening`` (overload, Redis
kill -9, slow clients, security headers, API keys) and ``gpu`` (CUDA parity, throughput, training).
They take minutes, so the test suite does not run them; ``tests/test_checks.py`` tests their verdicts.
"""
