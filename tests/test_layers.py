"""The house has floors: imports point down, never up, and packages import no loops.

contracts (names, keys, ids; no TensorFlow) < components (TFX components) <
pipeline (assembles and runs) < tools (serve, predict, report, lr-find, submit).
Checked on the source text (AST), so no module is imported to check it.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAYERS = ("contracts", "components", "pipeline", "tools")  # bottom to top
PACKAGE = "visiontfx"


def module_name(path: Path, repo: Path = REPO) -> str:
    parts = path.relative_to(repo).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((PACKAGE, *parts))


def imported_modules(path: Path, repo: Path = REPO) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in the file, at any depth (lazy ones too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    own = module_name(path, repo)
    package = own.rsplit(".", 1)[0] if path.name != "__init__.py" else own
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            # `from visiontfx.components import trainer` imports a package, too
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != PACKAGE or len(parts) < 2 or parts[1] not in LAYERS:
        return None
    return LAYERS.index(parts[1])


def source_files() -> list[Path]:
    return sorted(p for layer in LAYERS if (REPO / layer).is_dir() for p in (REPO / layer).rglob("*.py"))


def test_every_layer_is_checked() -> None:
    files = source_files()
    assert {module_name(p).split(".")[1] for p in files} >= {"components", "pipeline"}


def test_imports_never_point_up() -> None:
    upward = []
    for path in source_files():
        own = layer_of(module_name(path))
        for line, module in imported_modules(path):
            target = layer_of(module)
            if target is not None and own is not None and target > own:
                where = f"{path.relative_to(REPO)}:{line} ({LAYERS[own]})"
                upward.append(f"{where} imports {module} ({LAYERS[target]})")
    assert not upward, "imports that point up a floor:\n" + "\n".join(sorted(set(upward)))


def test_contracts_import_no_tensorflow() -> None:
    heavy = {"tensorflow", "tf_keras", "tfx", "apache_beam", "tensorflow_transform"}
    offenders = [
        f"{path.relative_to(REPO)}:{line} imports {module}"
        for path in source_files()
        if module_name(path).split(".")[1] == "contracts"
        for line, module in imported_modules(path)
        if module.split(".")[0] in heavy
    ]
    assert not offenders, offenders


def _unit(module: str) -> str | None:
    """The package a module belongs to for the loop check: visiontfx.<layer>.<package>."""
    parts = module.split(".")
    if layer_of(module) is None or len(parts) < 3:
        return None
    return ".".join(parts[:3])


def test_packages_import_no_loops() -> None:
    edges: dict[str, set[str]] = {}
    for path in source_files():
        source = _unit(module_name(path))
        if source is None:
            continue
        for _, module in imported_modules(path):
            target = _unit(module)
            if target and target != source and (REPO.joinpath(*target.split(".")[1:])).is_dir():
                edges.setdefault(source, set()).add(target)
    loops = []
    for start in edges:
        stack = [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for nxt in edges.get(node, ()):
                if nxt == start:
                    loops.append(" -> ".join([*trail, start]))
                elif nxt not in trail and len(trail) < 6:
                    stack.append((nxt, [*trail, nxt]))
    assert not loops, "package import loops:\n" + "\n".join(sorted(set(loops)))


def test_the_checker_sees_lazy_relative_and_package_imports(tmp_path: Path) -> None:
    """The checks above can fail: upward imports hidden in a function are found."""
    module = tmp_path / "components" / "trainer" / "sneaky.py"
    module.parent.mkdir(parents=True)
    module.write_text(
        "def later():\n"
        "    from visiontfx.pipeline import dag\n"
        "    from ..report import page\n"
        "    import visiontfx.tools.cli\n"
    )
    found = {name for _, name in imported_modules(module, repo=tmp_path)}
    assert {"visiontfx.pipeline.dag", "visiontfx.tools.cli", "visiontfx.components.report.page"} <= found
    own = layer_of(module_name(module, repo=tmp_path))
    assert own is not None and all(
        (layer_of(name) or 0) > own for name in ("visiontfx.pipeline.dag", "visiontfx.tools.cli")
    )
