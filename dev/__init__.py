"""Developer tooling outside the product package: the dev stack (``python -m dev.stack``) and
the out-of-band host teardown that tests and benchmarks use. Nothing here ships in the wheel."""
