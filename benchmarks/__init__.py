"""Measurements run by hand, from the repository root: ``python -m benchmarks.<name>``.

Load and throughput of the service against raw ONNX Runtime and a naive server, Redis persistence,
memory, slow clients, the face detectors, photo restoration on held-out faces, training speed.
Their results are under ``benchmarks/results/`` and quoted in docs/benchmarks.md. Pass/fail
acceptance checks are in ``checks/``, not here.
"""
