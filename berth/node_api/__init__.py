"""The node endpoint's wire: Berth's protos and their stubs (scripts/gen_node_stubs.py)."""
