"""Drop-in for the reference's users: every class of the reference's Python package
(BoxLite 0.10.8, listed in shared/reference/python-api-boxlite-0.10.8.txt) that exists here
has the reference's members, and its methods accept the reference's parameter names. What
the reference has and boxlite does not (yet) is listed below with the reason; the test fails
when the list and the code disagree either way."""

from __future__ import annotations

import inspect
import pathlib
import re

import boxlite
import boxlite.sync_api

from conftest import REPO

REFERENCE = REPO.parent / "shared" / "reference" / "python-api-boxlite-0.10.8.txt"

# Features of the reference's service-backed or later releases this runtime has not got.
NOT_HERE = {
    "AccessToken", "ApiKeyCredential", "BoxliteRestOptions", "CloneOptions", "Credential",
    "ExportOptions", "HealthState", "HealthStatus", "ImageAliasEvent", "ImageDetail",
    "ImagePullResult", "ImageUsage", "ImageVersion", "InboundNetworkInfo", "InboundNetworkSpec",
    "NetworkHandle", "NetworkInfo", "OutboundNetworkInfo", "OutboundNetworkSpec",
    "PackageNotFoundError", "PublishedPort", "RegistryCredential", "RegistryHandle", "SkillBox",
    "SocketAddress", "SyncSkillBox",
    "SyncNetworkHandle", "SyncRegistryHandle", "SyncTunnelForwarder", "TunnelForwarder",
    "VolumeHandle", "VolumeInfo", "SyncBase", "SyncContextManager",
}
MEMBERS_NOT_HERE = {
    # Disk clones (forks of running boxes are here: `Box.fork`), exports, tunnels, REST and
    # named volumes: not in this runtime yet.
    "Box.clone_box", "Box.export", "Box.network",
    "Boxlite.import_box", "Boxlite.rest", "Boxlite.volumes",
    "SimpleBox.network", "SimpleBox.tunnel", "SyncBox.network", "SyncBox.tunnel",
    "SyncBoxlite.rest", "SyncSimpleBox.network", "SyncSimpleBox.tunnel",
    # The greenlet dispatcher and event loop of the reference's sync API: none here.
    "SyncBoxlite.dispatcher_fiber", "SyncBoxlite.loop",
    # Skill boxes' image registry management and image aliases (service features).
    "ImageHandle.create_alias", "ImageHandle.delete_alias", "ImageHandle.get",
    "ImageHandle.registries", "ImageHandle.usage", "SyncImageHandle.create_alias",
    "SyncImageHandle.delete_alias", "SyncImageHandle.get", "SyncImageHandle.registries",
    "SyncImageHandle.usage",
}


def reference_classes() -> dict[str, dict[str, list[str] | None]]:
    """class name -> {member: parameter names (None for an attribute)}."""
    classes: dict[str, dict[str, list[str] | None]] = {}
    current = None
    for line in REFERENCE.read_text().splitlines():
        if line.startswith("# boxlite.sync_api"):
            break  # the same classes again, under sync_api.
        if match := re.match(r"class (\w+)\((.*?)\)(?:\s*->.*)?(?:\s*#.*)?$", line):
            current = classes.setdefault(match.group(1), {"__init__": params(match.group(2))})
        elif current is not None and (match := re.match(r"    (?:async )?def (\w+)\((.*)\)", line)):
            current[match.group(1)] = params(match.group(2))
        elif current is not None and (match := re.match(r"    (\w+)\s+\(attribute/property\)", line)):
            current[match.group(1)] = None
    return classes


def params(text: str) -> list[str]:
    names = []
    for part in re.split(r",\s*(?![^\[]*\])", text):
        name = part.split(":")[0].split("=")[0].strip()
        if name and name not in ("self", "/", "*", "...") and not name.startswith("*"):
            names.append(name)
    return names


def ours(name: str):
    return getattr(boxlite, name, None) or getattr(boxlite.sync_api, name, None)


def test_the_reference_surface_is_here():
    assert REFERENCE.is_file(), f"{REFERENCE} is missing (shared/ lies beside the checkout)"
    problems = []
    for class_name, members in reference_classes().items():
        cls = ours(class_name)
        if class_name in NOT_HERE:
            assert cls is None, f"{class_name} exists now: take it off NOT_HERE"
            continue
        if cls is None:
            problems.append(f"missing class {class_name}")
            continue
        for member, names in members.items():
            key = f"{class_name}.{member}"
            has = hasattr(cls, member) or member in getattr(cls, "__dataclass_fields__", {})
            if key in MEMBERS_NOT_HERE:
                assert not has, f"{key} exists now: take it off MEMBERS_NOT_HERE"
                continue
            if not has:
                problems.append(f"missing {key}")
                continue
            if names is None or member == "__init__" and not callable(cls):
                continue
            target = cls if member == "__init__" else getattr(cls, member)
            if not callable(target):
                continue
            try:
                signature = inspect.signature(target)
            except ValueError:  # a builtin's (the exception classes take any arguments)
                continue
            accepted = set(signature.parameters)
            takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
            for name in names:
                if name not in accepted and not takes_any:
                    problems.append(f"{key} does not take {name!r} ({signature})")
    assert not problems, "\n".join(problems)


def test_native_errors_have_the_reference_bases():
    for name in ("NotFoundError", "AlreadyExistsError", "InvalidStateError", "ConfigError",
                 "EngineError", "UnsupportedError", "ImageError", "StoppedError"):
        cls = getattr(boxlite, name)
        assert issubclass(cls, boxlite.BoxliteError) and issubclass(cls, RuntimeError)
        assert isinstance(cls.code, int) and cls.code > 0
    assert issubclass(boxlite.ExecError, boxlite.BoxliteError)
