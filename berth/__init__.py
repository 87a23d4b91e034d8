"""Berth: durable container starts as Temporal sagas on containerd."""
