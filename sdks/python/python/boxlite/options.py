"""Options of the runtime, of boxes and of copies, with the reference's names and defaults.

``BoxOptions._to_native()`` turns them into the plain dict the Rust core reads. What the core
cannot do yet is refused with ``UnsupportedError`` naming the field, never silently ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence, Union

from .errors import InvalidArgumentError, UnsupportedError


@dataclass
class ImageRegistry:
    """A registry for unqualified image names (``python:slim`` → ``HOST/library/python:slim``).

    Plain ``http`` is used for loopback registries only; credentials come from
    ``~/.docker/config.json`` (and its credential helpers), not from here.
    """

    host: str
    transport: str = "https"
    skip_verify: bool = False
    search: bool = False
    username: str | None = None
    password: str | None = None
    bearer_token: str | None = None

    def _host(self) -> str:
        if self.transport not in ("https", "http"):
            raise InvalidArgumentError(
                f"ImageRegistry {self.host!r}: transport {self.transport!r} is not https or http"
            )
        if self.skip_verify:
            raise UnsupportedError(
                f"ImageRegistry {self.host!r}: skip_verify=True is not supported; use a "
                "loopback registry over http, or a certificate this host trusts"
            )
        if self.username or self.password or self.bearer_token:
            raise UnsupportedError(
                f"ImageRegistry {self.host!r}: credentials here are not supported; "
                "`docker login` (or ~/.docker/config.json) provides them"
            )
        return self.host


RegistryLike = Union[str, ImageRegistry]


@dataclass
class Options:
    """Runtime options: the home (``BOXLITE_HOME``, else ``~/.boxlite``) and the registries
    tried in order for unqualified image names."""

    home_dir: str | None = None
    image_registries: list[RegistryLike] = field(default_factory=list)

    def _native_args(self) -> tuple[str | None, list[str]]:
        registries = [r if isinstance(r, str) else r._host() for r in self.image_registries]
        home = os.fspath(self.home_dir) if self.home_dir is not None else None
        return home, registries


@dataclass
class SecurityOptions:
    """How a box's host processes (its shim and VMM) are confined."""

    jailer_enabled: bool = False
    seccomp_enabled: bool = False
    max_open_files: int | None = None
    max_file_size: int | None = None
    max_processes: int | None = None
    max_memory: int | None = None
    max_cpu_time: int | None = None
    network_enabled: bool = True
    close_fds: bool = True

    @staticmethod
    def development() -> "SecurityOptions":
        """Nothing applied: the shim inherits descriptors, environment and limits."""
        return SecurityOptions(close_fds=False)

    @staticmethod
    def standard() -> "SecurityOptions":
        """No leaked descriptors, a sanitised environment (the default)."""
        return SecurityOptions()

    @staticmethod
    def maximum() -> "SecurityOptions":
        """``standard()`` with limits: 4096 descriptors, 64 GiB files, 24 h of CPU."""
        return SecurityOptions(
            max_open_files=4096, max_file_size=64 << 30, max_cpu_time=24 * 3600
        )

    def _to_native(self) -> dict[str, Any]:
        native = dict(self.__dict__)
        # development() is the only preset that keeps the caller's environment.
        native["sanitize_env"] = self.close_fds
        return native


@dataclass
class HealthCheckOptions:
    interval: int = 30
    timeout: int = 10
    retries: int = 3
    start_period: int = 60


@dataclass
class ContainerCapabilities:
    add: list[str] = field(default_factory=list)
    drop: list[str] = field(default_factory=list)


@dataclass
class AdvancedBoxOptions:
    security: SecurityOptions | None = None
    health_check: HealthCheckOptions | None = None
    capabilities: ContainerCapabilities | None = None


@dataclass
class NetworkSpec:
    """The box's network: ``mode`` ``"enabled"`` (default; outbound reachable) or
    ``"disabled"`` (loopback only); ``allow_net`` limits where it may go (CIDRs)."""

    outbound: Any = None
    inbound: Any = None
    mode: str | None = None
    allow_net: list[str] | None = None


@dataclass
class Secret:
    name: str
    value: str
    hosts: list[str] = field(default_factory=list)
    placeholder: str | None = None

    def get_placeholder(self) -> str:
        return self.placeholder or f"<boxlite-secret:{self.name}>"


@dataclass
class CopyOptions:
    """How ``copy_in``/``copy_out`` copy (trees, replacing what is there, symlinks kept)."""

    recursive: bool = True
    overwrite: bool = True
    follow_symlinks: bool = False
    include_parent: bool = True

    def _to_native(self) -> dict[str, bool]:
        return dict(self.__dict__)


VolumeLike = Union[str, Sequence[Any], Mapping[str, Any]]
PortLike = Union[int, str, Sequence[Any], Mapping[str, Any]]


@dataclass
class BoxOptions:
    """A box's options, as the reference names them. Beyond it: ``allow_host``,
    ``allow_net``, ``deny_net`` (network policy), ``engine`` (``"qemu"``/``"krun"``),
    ``ready_timeout`` (seconds), ``labels`` and ``security`` (same as
    ``advanced.security``)."""

    image: str | None = None
    rootfs_path: str | None = None
    cpus: int | None = None
    memory_mib: int | None = None
    disk_size_gb: int | None = None
    working_dir: str | None = None
    env: Union[list[tuple[str, str]], dict[str, str]] = field(default_factory=list)
    volumes: list[VolumeLike] = field(default_factory=list)
    network: Union[str, NetworkSpec, None] = None
    ports: list[PortLike] = field(default_factory=list)
    auto_remove: bool | None = None
    auto_stop: Any = None
    auto_delete: Any = None
    auto_resume: Any = None
    detach: bool | None = None
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    user: str | None = None
    tty: bool | None = None
    advanced: AdvancedBoxOptions | None = None
    secrets: list[Secret] = field(default_factory=list)
    # Beyond the reference.
    security: SecurityOptions | None = None
    allow_host: bool | None = None
    allow_net: list[str] | None = None
    deny_net: list[str] | None = None
    engine: str | None = None
    ready_timeout: float | None = None
    labels: dict[str, str] = field(default_factory=dict)

    def _to_native(self) -> dict[str, Any]:
        for name in ("auto_stop", "auto_delete", "auto_resume", "entrypoint", "cmd", "user"):
            if getattr(self, name) is not None:
                raise UnsupportedError(
                    f"BoxOptions.{name} is not supported yet: leave it None "
                    "(run commands with box.exec, which takes user=)"
                )
        if self.tty:
            raise UnsupportedError("BoxOptions.tty is not supported: pass tty=True to exec")
        if self.secrets:
            raise UnsupportedError("BoxOptions.secrets is not supported yet")
        security = self.security
        if self.advanced is not None:
            if self.advanced.health_check is not None:
                raise UnsupportedError("AdvancedBoxOptions.health_check is not supported yet")
            if self.advanced.capabilities is not None:
                raise UnsupportedError("AdvancedBoxOptions.capabilities is not supported yet")
            if self.advanced.security is not None:
                if security is not None and security != self.advanced.security:
                    raise InvalidArgumentError(
                        "BoxOptions.security and advanced.security disagree: give one"
                    )
                security = self.advanced.security
        native: dict[str, Any] = {
            "image": self.image,
            "rootfs_path": os.fspath(self.rootfs_path) if self.rootfs_path else None,
            "cpus": self.cpus,
            "memory_mib": self.memory_mib,
            "disk_size_gb": self.disk_size_gb,
            "working_dir": self.working_dir,
            "env": _pairs(self.env, "env"),
            "volumes": [_volume(v) for v in self.volumes],
            "ports": [_port(p) for p in self.ports],
            "auto_remove": self.auto_remove,
            "detach": self.detach,
            "security": security._to_native() if security is not None else None,
            "allow_host": self.allow_host,
            "allow_net": self.allow_net,
            "deny_net": self.deny_net,
            "engine": self.engine,
            "ready_timeout": self.ready_timeout,
            "labels": dict(self.labels),
        }
        native.update(_network(self.network))
        if native.get("network_allow_net") is not None:
            if self.allow_net is not None:
                raise InvalidArgumentError("allow_net given twice: in network and in BoxOptions")
            native["allow_net"] = native["network_allow_net"]
        native.pop("network_allow_net", None)
        return native


def _pairs(env: Union[Mapping[str, str], Iterable[Sequence[str]]], what: str) -> list[tuple[str, str]]:
    items = env.items() if isinstance(env, Mapping) else env
    pairs = []
    for item in items:
        if isinstance(item, str) and "=" in item:
            key, value = item.split("=", 1)
        else:
            try:
                key, value = item
            except (TypeError, ValueError):
                raise InvalidArgumentError(f"{what}: {item!r} is not a (KEY, VALUE) pair") from None
        pairs.append((str(key), str(value)))
    return pairs


def _volume(volume: VolumeLike) -> tuple[str, str, bool]:
    """``"HOST:GUEST[:ro]"``, ``(HOST, GUEST)``, ``(HOST, GUEST, "ro" | True)`` or a dict
    with host_path, guest_path and read_only."""
    if isinstance(volume, str):
        parts = volume.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise InvalidArgumentError(f"volume {volume!r} is not HOST:GUEST[:ro]")
        return parts[0], parts[1], len(parts) == 3 and parts[2] == "ro"
    if isinstance(volume, Mapping):
        return (
            os.fspath(volume["host_path"]),
            str(volume["guest_path"]),
            bool(volume.get("read_only", False)),
        )
    parts = list(volume)
    if len(parts) == 2:
        return os.fspath(parts[0]), str(parts[1]), False
    if len(parts) == 3:
        mode = parts[2]
        if isinstance(mode, str):
            if mode not in ("ro", "rw"):
                raise InvalidArgumentError(f"volume {volume!r}: mode {mode!r} is not ro or rw")
            read_only = mode == "ro"
        else:
            read_only = bool(mode)
        return os.fspath(parts[0]), str(parts[1]), read_only
    raise InvalidArgumentError(f"volume {volume!r} is not (HOST, GUEST[, 'ro'])")


def _port(port: PortLike) -> str:
    """``8080`` (same port), ``"[IP:]HOST:GUEST[/udp]"``, ``(HOST, GUEST[, PROTOCOL])`` or
    a dict with host_port, guest_port, protocol and host_ip; as the core's string form."""
    if isinstance(port, bool):
        raise InvalidArgumentError(f"port {port!r} is not a port")
    if isinstance(port, int):
        return f"{port}:{port}"
    if isinstance(port, str):
        return port
    if isinstance(port, Mapping):
        guest = port["guest_port"]
        host = port.get("host_port") or guest
        spec = f"{host}:{guest}/{port.get('protocol', 'tcp')}"
        return f"{port['host_ip']}:{spec}" if port.get("host_ip") else spec
    parts = list(port)
    if len(parts) == 2:
        return f"{parts[0]}:{parts[1]}"
    if len(parts) == 3:
        return f"{parts[0]}:{parts[1]}/{str(parts[2]).lower()}"
    raise InvalidArgumentError(f"port {port!r} is not (HOST, GUEST[, PROTOCOL])")


def _network(network: Union[str, NetworkSpec, None]) -> dict[str, Any]:
    if network is None:
        return {}
    if isinstance(network, str):
        return {"network": {"enabled": "user", "disabled": "none"}.get(network, network)}
    if network.outbound is not None or network.inbound is not None:
        raise UnsupportedError("NetworkSpec.outbound/inbound are not supported yet: use allow_net")
    mode = {None: "user", "enabled": "user", "disabled": "none"}.get(network.mode, network.mode)
    return {"network": mode, "network_allow_net": network.allow_net}
