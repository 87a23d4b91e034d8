"""The node endpoint: a gRPC server in each node agent for what is a byte stream, not a workflow.

Logs (``logs``), exec and attach (``exec``), cp and a streamed export (``files``) reach a
container through the agent on its node. ``server`` serves them (mTLS outside loopback; every
call logged with who asked), ``client`` finds a node's endpoint from PostgreSQL (the agent
records its address with its heartbeat) and opens a channel to it. The wire is
``berth.node_api``.
"""
