"""What the test suite builds around the code under test: its own stack, footprints."""
