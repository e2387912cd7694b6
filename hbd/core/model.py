"""The plain values the core is configured with: the wire format, the failback mode, and the
resource groups (as haresources lists them). `hbd.config` parses files into these; the core
never imports the configuration model.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class WireFormat(enum.Enum):
    """Which frame format hbd sends (`wire` directive). hbd's is always accepted,
    Heartbeat's with `wire heartbeat` or `wire_accept hbd heartbeat`."""

    HEARTBEAT = "heartbeat"  # Heartbeat 3.0.6: classic text on serial, netstring on UDP
    HBD = "hbd"  # hbd's compact HMAC-SHA256 frames


class AutoFailback(enum.Enum):
    ON = "on"
    OFF = "off"
    LEGACY = "legacy"


class AgentKind(enum.Enum):
    """How a resource agent is run, in Heartbeat's resolution order."""

    BUILTIN = "builtin"  # written into hbd: IPaddr, IPaddr2, SendArp
    RESOURCE_D = "resource.d"  # /etc/ha.d/resource.d/NAME [args] start|stop|status
    INIT_D = "init.d"  # /etc/init.d/NAME start|stop|status
    OCF = "ocf"  # OCF agent: OCF_RESKEY_* environment, OCF exit codes


@dataclass(frozen=True, slots=True)
class Resource:
    """One `name::arg1::arg2` item of an haresources line, resolved to an agent."""

    name: str
    args: tuple[str, ...]
    agent: AgentKind
    agent_path: str | None  # the script for resource.d/init.d/OCF; None for built-ins
    source: str
    # OCF: the instance file's assignments (NAME, value) in file order, exported to the agent
    settings: tuple[tuple[str, str], ...] = ()

    @property
    def spec(self) -> str:
        """The resource as written (a bare IP is shown as `IPaddr::IP`)."""
        return "::".join((self.name, *self.args))


@dataclass(frozen=True, slots=True)
class ResourceGroup:
    """One haresources line: the preferred node and its resources, started left to right."""

    preferred: str
    resources: tuple[Resource, ...]
    source: str

    @property
    def name(self) -> str:
        """A group is named by its first resource, as Heartbeat's ResourceManager does."""
        return self.resources[0].spec
