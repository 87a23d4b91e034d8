"""containerd API stubs: generated code, committed; made and checked by scripts/gen_containerd_stubs.py."""
