"""Helpers shared by the test suite (``tests/``) and the benchmarks (``bench/``): polling, loopback ports and
processes, the Procfile topology, the Mongo wire server. Neither ``service`` nor ``emulator`` imports it, and it
imports no ``tests.*`` module (``tests/foundation/test_dependencies.py``)."""
