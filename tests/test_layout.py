"""The house stays drawn: every module imports only along the architecture's direction.

    commands -> shell -> core          the core decides; it imports nothing of the project
    shell -> effects (links too)        outside itself and no I/O module of the library
    effects -> config -> core           effects carry out what the core asks for
    testing -> effects, config, core    shipped test tools (simulator, FUSE watchdog)

The test reads every module's imports (function-level ones too) with `ast`, so a
lazy import inside a function cannot dodge it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# layer -> the layers it may import (itself included)
ALLOWED: dict[str, set[str]] = {
    "core": {"core"},
    "config": {"config", "core"},
    "effects": {"effects", "config", "core"},
    "shell": {"shell", "effects", "config", "core"},
    "commands": {"commands", "shell", "config", "core"},
    "testing": {"testing", "effects", "config", "core"},
    "package": {"package"},
}

# the core is sans-I/O: no clock, no sockets, no processes, no files
IO_MODULES = {
    "asyncio",
    "os",
    "select",
    "selectors",
    "serial",
    "socket",
    "subprocess",
    "threading",
    "time",
    "pyroute2",
    "scapy",
}


def layer_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "hbd":
        raise ValueError(module)
    if len(parts) == 1:
        return "package"
    top = parts[1]
    if top == "links":
        return "effects"
    if top in ALLOWED:
        return top
    raise AssertionError(f"{module}: not in any layer; give it a home in {sorted(ALLOWED)}")


def modules() -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    for path in sorted((ROOT / "hbd").rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        if "links" in rel.parts:
            continue  # hbd/links is a symlink to the top-level links/
        out.append((".".join(p for p in rel.parts if p != "__init__"), path))
    for path in sorted((ROOT / "links").glob("*.py")):
        name = "hbd.links" if path.stem == "__init__" else f"hbd.links.{path.stem}"
        out.append((name, path))
    return out


def imports(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.stem == "__init__" else module.rsplit(".", 1)[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target == "hbd":  # `from hbd import x` imports hbd.x
                found.extend((node.lineno, f"hbd.{a.name}") for a in node.names)
            else:
                found.append((node.lineno, target))
    return found


def violations(files: list[tuple[str, Path]]) -> list[str]:
    bad: list[str] = []
    for module, path in files:
        mine = layer_of(module)
        for line, target in imports(module, path):
            where = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{line}"
            if target.split(".")[0] == "hbd":
                if target == "hbd" or target == "hbd.__version__":
                    continue  # the version string belongs to everyone
                theirs = layer_of(target)
                if theirs not in ALLOWED[mine]:
                    bad.append(f"{where}: {mine} module {module} imports {theirs} {target}")
            elif mine == "core" and target.split(".")[0] in IO_MODULES:
                bad.append(f"{where}: the core ({module}) imports the I/O module {target}")
    return bad


def test_every_module_imports_along_the_architecture() -> None:
    assert violations(modules()) == []


@pytest.mark.parametrize(
    ("module", "source", "complaint"),
    [
        ("hbd.core.policy", "from hbd.shell.daemon import Daemon\n", "core module"),
        ("hbd.core.engine", "import time\n", "I/O module time"),
        ("hbd.core.engine", "def f():\n    from hbd.config.model import HaCf\n", "core module"),
        ("hbd.effects.watchdog", "from hbd.commands.cli import hbctl_main\n", "effects module"),
        ("hbd.commands.cli", "from hbd.links.serial import SerialLink\n", "commands module"),
        ("hbd.links.udp", "from ..shell import daemon\n", "effects module"),
        ("hbd.testing.sim", "from hbd import shell\n", "testing module"),
    ],
)
def test_an_import_against_the_direction_is_caught(
    tmp_path: Path, module: str, source: str, complaint: str
) -> None:
    fake = tmp_path / (module.rsplit(".", 1)[1] + ".py")
    fake.write_text(source)
    found = violations([(module, fake)])
    assert len(found) == 1 and complaint in found[0], found


def test_a_module_outside_every_layer_is_named() -> None:
    with pytest.raises(AssertionError, match=r"hbd\.misc: not in any layer"):
        layer_of("hbd.misc")
