"""The tree is the architecture: imports run one way, from the commands down to the model.

Every import of every module under scanner/ is read with `ast` (top-level, inside functions,
under `if TYPE_CHECKING:`), so an import cannot hide from the check by being lazy or
type-only. Two rules: no cycle between modules, and a module imports only its own package and
the packages below it in LAYERS. The lab is apart: it may use the scanner's lower packages
(LAB_MAY_IMPORT), and only the commands may use the lab (`scanner lab serve`, the demo).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: The scanner's packages, bottom to top; the packages of one entry are peers and import
#: neither each other nor anything above them. `scanner` is the root package's __init__.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("scanner",),
    ("scanner.model",),
    ("scanner.config",),
    ("scanner.sink",),
    ("scanner.inputs", "scanner.dns", "scanner.tls"),
    ("scanner.smtp",),
    ("scanner.policy",),
    ("scanner.scan",),
    ("scanner.analysis",),
    ("scanner.report",),
    ("scanner.commands",),
    ("scanner.__main__",),
)
#: The lab's own packages, bottom to top (`scanner.lab`: its cli and serve modules).
LAB_LAYERS: tuple[tuple[str, ...], ...] = (
    ("scanner.lab.population",),
    ("scanner.lab.servers", "scanner.lab.truth"),
    ("scanner.lab",),
)
#: What the lab may use of the scanner: the vocabularies and the lower layers, never the
#: scan's own judgement (its truth is written independently of the scanner's parsers).
LAB_MAY_IMPORT = frozenset({"scanner", "scanner.model", "scanner.config", "scanner.sink",
                            "scanner.inputs", "scanner.dns", "scanner.tls"})
#: The only packages outside the lab that may import it.
LAB_USERS = frozenset({"scanner.commands"})

_RANK = {unit: (0, i) for i, units in enumerate(LAYERS) for unit in units}
_RANK.update({unit: (1, i) for i, units in enumerate(LAB_LAYERS) for unit in units})


def module_names(root: Path) -> dict[str, Path]:
    """Every module under root/scanner by dotted name (a package by its own name)."""
    found = {}
    for path in sorted((root / "scanner").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imported(node: ast.AST, module: str, is_package: bool, known: Mapping[str, Path]
              ) -> Iterable[str]:
    """The scanner modules one import statement loads (`from pkg import mod` names mod)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        if node.level:  # relative: from the module's package, one level up per extra dot
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[:len(base) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        for alias in node.names:
            sub = f"{source}.{alias.name}"
            yield sub if sub in known else source


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the scanner modules it imports anywhere in its source."""
    known = module_names(root)
    graph: dict[str, set[str]] = {}
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        deps: set[str] = set()
        for node in ast.walk(tree):
            for name in _imported(node, module, path.name == "__init__.py", known):
                # `import scanner.a.b` names a module; `from scanner.a import Thing` its module
                while name and name not in known and "." in name:
                    name = name.rsplit(".", 1)[0]
                if name in known and name != module:
                    deps.add(name)
        graph[module] = deps
    return graph


def unit_of(module: str) -> str | None:
    """The package of LAYERS or LAB_LAYERS a module belongs to (the longest that holds it);
    `scanner` holds only its own __init__, so a new top-level module must be given a layer."""
    best = None
    for unit in _RANK:
        inside = module == unit or (unit != "scanner" and module.startswith(unit + "."))
        if inside and (best is None or len(unit) > len(best)):
            best = unit
    return best


def _may_import(src: str, dst: str) -> bool:
    if src == dst:
        return True
    (src_stack, src_rank), (dst_stack, dst_rank) = _RANK[src], _RANK[dst]
    if src_stack == dst_stack:
        return dst_rank < src_rank
    if src_stack == 1:  # the lab using the scanner
        return dst in LAB_MAY_IMPORT
    return src in LAB_USERS  # the scanner using the lab


def upward_imports(graph: Mapping[str, set[str]]) -> list[str]:
    """`a -> b` for every import of a package that is not below the importer's."""
    bad = []
    for module, deps in sorted(graph.items()):
        src = unit_of(module)
        for dep in sorted(deps):
            dst = unit_of(dep)
            if src is None or dst is None or not _may_import(src, dst):
                bad.append(f"{module} -> {dep} ({src} may not import {dst})")
    return bad


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_belongs_to_a_layer() -> None:
    lost = [m for m in module_names(ROOT) if unit_of(m) is None]
    assert not lost, f"modules in no package of LAYERS or LAB_LAYERS: {lost}"


def test_no_import_cycles() -> None:
    found = cycles(import_graph(ROOT))
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_imports_run_down_the_layers() -> None:
    bad = upward_imports(import_graph(ROOT))
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_packages_say_what_they_own_and_import_nothing() -> None:
    """Each package's __init__ is a docstring (what it owns, what it may import) and no
    imports: importing one module of a package never loads its siblings (start-up time)."""
    for path in sorted((ROOT / "scanner").rglob("__init__.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        doc = ast.get_docstring(tree)
        assert doc and len(doc.splitlines()) >= 2, f"{path}: say what it owns and may import"
        if path.parent.name != "scanner":  # the root sets the OpenBLAS environment
            assert all(isinstance(n, ast.Expr) for n in tree.body), f"{path}: keep it light"


def printing_modules(root: Path) -> list[str]:
    """Modules outside the commands and the lab (a program of its own) that print or write
    to sys.stdout / sys.stderr."""
    found = []
    for module, path in module_names(root).items():
        if unit_of(module) in (None, "scanner.commands") or module.startswith("scanner.lab"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Name) and node.id == "print") or (
                    isinstance(node, ast.Attribute) and node.attr in ("stdout", "stderr")
                    and isinstance(node.value, ast.Name) and node.value.id == "sys"):
                found.append(f"{module}:{node.lineno}")
    return sorted(set(found))


def test_only_the_commands_print() -> None:
    found = printing_modules(ROOT)
    assert not found, f"print or sys.stdout/stderr outside scanner.commands: {found}"


def _plant(root: Path, files: Mapping[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checks_catch_planted_violations(tmp_path: Path) -> None:
    _plant(tmp_path, {
        "scanner/__init__.py": "",
        "scanner/sink/__init__.py": "",
        "scanner/commands/__init__.py": "",
        "scanner/commands/cli.py": "from scanner.sink import parquet\n",
        # lazy and type-only imports count as much as top-level ones
        "scanner/sink/parquet.py": "def f():\n    from scanner.commands.cli import main\n",
        "scanner/sink/rows.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                "    from scanner.sink import schema\n",
        "scanner/sink/schema.py": "from . import rows\n",
        "scanner/lab/__init__.py": "",
        "scanner/lab/serve.py": "import scanner.commands.cli\n",
        "scanner/model/__init__.py": "",
        "scanner/model/records.py": "from scanner.lab import serve\n",
        "scanner/scan/__init__.py": "",
        "scanner/scan/pipeline.py": "import sys\nprint('hi', file=sys.stderr)\n",
        "scanner/utils.py": "",
    })
    graph = import_graph(tmp_path)
    assert upward_imports(graph) == [
        "scanner.lab.serve -> scanner.commands.cli (scanner.lab may not import scanner.commands)",
        "scanner.model.records -> scanner.lab.serve (scanner.model may not import scanner.lab)",
        "scanner.sink.parquet -> scanner.commands.cli "
        "(scanner.sink may not import scanner.commands)",
    ]
    assert cycles(graph) == [
        ["scanner.commands.cli", "scanner.sink.parquet"],
        ["scanner.sink.rows", "scanner.sink.schema"],
    ]
    assert printing_modules(tmp_path) == ["scanner.scan.pipeline:2"]
    assert [m for m in module_names(tmp_path) if unit_of(m) is None] == ["scanner.utils"]
