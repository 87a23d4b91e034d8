# Berth's worker image: the control worker and the node agent (which also runs containerd).
FROM python:3.11-slim-bookworm

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1

# containerd + runc + CNI plugins run containers on a node; busybox-static is the test image;
# the two -dev packages carry the .proto files the containerd stubs are compiled from.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        containerd runc containernetworking-plugins busybox-static \
        golang-github-containerd-containerd-dev golang-github-gogo-protobuf-dev \
        iproute2 iptables util-linux \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY berth berth
COPY workflows workflows
COPY activities activities
COPY migrations migrations
COPY scripts scripts
COPY dev dev

# The stubs are build output: generate them, then install the package that contains them.
RUN pip install grpcio-tools \
    && python scripts/gen_containerd_stubs.py \
    && pip install .

ENV BERTH_STATE_DIR=/var/lib/berth
CMD ["python", "-m", "berth.worker", "control"]
