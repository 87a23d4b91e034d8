"""Orchestration only: no SQL, no gRPC, no I/O."""
