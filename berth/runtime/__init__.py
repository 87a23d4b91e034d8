"""Host-bound runtime: containerd, CNI, network namespaces, kernel mounts, OCI specs."""
