"""Linux capabilities as Docker sets them: its default set, ``--cap-add`` and ``--cap-drop``.

Pure functions: the OCI spec builds the process's sets with them, and the node agent checks the
result against what it permits (``allowed_capabilities``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

# The names live with the contract, which validates them (workflows import only the contract).
from berth.contract import ALL_CAPABILITIES as ALL
from berth.contract import DEFAULT_CAPABILITIES, KNOWN_CAPABILITIES
from berth.contract import normalize_capability as normalize
from berth.errors import Forbidden


def container_capabilities(cap_add: Iterable[str], cap_drop: Iterable[str]) -> list[str]:
    """The container's set from Docker's default and its adds and drops (moby TweakCapabilities).

    ``ALL`` in ``cap_add``: every capability but those dropped; ``ALL`` in ``cap_drop``: only
    those added; else the default set less the dropped, plus the added (an add wins a drop).
    """
    adds = [normalize(name) for name in cap_add]
    drops = [normalize(name) for name in cap_drop]
    if ALL in adds:
        return [c for c in KNOWN_CAPABILITIES if c not in drops]
    base: list[str] = [] if ALL in drops else [c for c in DEFAULT_CAPABILITIES if c not in drops]
    return base + [c for c in KNOWN_CAPABILITIES if c in adds and c not in base]


def beyond_allowed(capabilities: Iterable[str], allowed: Collection[str]) -> list[str]:
    """Those of ``capabilities`` outside Docker's default set that ``allowed`` does not name.

    ``allowed`` holds names as :func:`normalize` takes them; ``ALL`` in it allows every one.
    """
    permitted = {normalize(name) for name in allowed}
    if ALL in permitted:
        return []
    return [c for c in capabilities if c not in DEFAULT_CAPABILITIES and c not in permitted]


def check_permitted(
    cap_add: Iterable[str], cap_drop: Iterable[str], allowed: Collection[str], where: str
) -> None:
    """Refuse a container whose capabilities go beyond Docker's default and ``allowed``.

    Raises:
        Forbidden: naming ``config.cap_add`` and the capabilities ``where`` does not permit.
    """
    refused = beyond_allowed(container_capabilities(cap_add, cap_drop), allowed)
    if refused:
        raise Forbidden(
            f"config.cap_add: {', '.join(refused)} not permitted {where} (beyond Docker's "
            "default set; see the setting allowed_capabilities)"
        )
