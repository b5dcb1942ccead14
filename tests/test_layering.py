"""The package's imports run one way: no cycles, and no module imports from a layer above its own.

The layers are read from ``docs/architecture.md`` (between the ``layers`` markers), so the document and the
code cannot drift apart. Every import counts, including those inside functions and under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
DOC = REPO / "docs" / "architecture.md"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / "xdr").rglob("*.py"))}


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The xdr modules ``name`` imports, a ``from package import submodule`` resolved to the submodule."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "xdr")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
            if base.split(".")[0] != "xdr":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    return {m for m in found if m != name and m in modules}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _layers() -> list[list[str]]:
    """Numbered list items between the markers (an item may wrap onto indented lines); each names its
    modules or packages in backticks."""
    text = DOC.read_text(encoding="utf-8")
    block = text.split("<!-- layers:start -->")[1].split("<!-- layers:end -->")[0]
    items = re.split(r"\n(?=\d+\.)", block.strip())
    return [re.findall(r"`(xdr[\w.]*)`", item) for item in items if re.match(r"\d+\.", item)]


def _layer_of(module: str, layers: list[list[str]]) -> int:
    """The layer of the longest listed prefix of ``module`` (the root ``xdr`` names only itself)."""
    best, depth = -1, -1
    for i, names in enumerate(layers):
        for n in names:
            inside = module.startswith(n + ".") and n != "xdr"
            if (module == n or inside) and n.count(".") > depth:
                best, depth = i, n.count(".")
    return best


def test_no_import_cycles() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycle = [*stack[stack.index(d):], d]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_every_module_has_a_layer_in_the_architecture_document() -> None:
    layers = _layers()
    assert len(layers) >= 5, f"{DOC}: no layer list between the markers"
    missing = [m for m in _modules() if _layer_of(m, layers) < 0]
    assert not missing, f"modules that {DOC.name} does not place in a layer: {missing}"


def test_imports_respect_the_layering() -> None:
    layers = _layers()
    upward = [
        f"{m} (layer {_layer_of(m, layers) + 1}) imports {d} (layer {_layer_of(d, layers) + 1})"
        for m, deps in sorted(_graph().items()) for d in sorted(deps)
        if _layer_of(d, layers) > _layer_of(m, layers)
    ]
    assert not upward, "imports that go up the layering of docs/architecture.md:\n" + "\n".join(upward)


def test_the_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    """The parser must count a function-level import, which is how the old cycle was hidden."""
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from xdr.search import search\n    import xdr.index\n", encoding="utf-8")
    modules = {"xdr.search": f, "xdr.index": f, "xdr.m": f}
    assert _imports("xdr.m", f, modules) == {"xdr.search", "xdr.index"}


def test_no_source_file_is_too_long() -> None:
    long = {str(p.relative_to(REPO)): n for p in (SRC / "xdr").rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 460}
    assert not long, f"files over 460 lines (split them by concept): {long}"


def test_import_xdr_does_not_load_torch() -> None:
    code = "import sys, xdr; assert 'torch' not in sys.modules, 'torch'; assert xdr.__version__"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_no_function_takes_a_long_parameter_list() -> None:
    """Past a dozen parameters a settings object carries the rest (FusionSettings, MiningSettings, the
    trainer configs); the CLI's commands are exempt, since each option is a parameter there."""
    limit = 12
    long = []
    for path in (SRC / "xdr").rglob("*.py"):
        if "cli" in path.relative_to(SRC).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                a = node.args
                names = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs) if x.arg not in ("self", "cls")]
                if len(names) > limit:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({len(names)})")
    assert not long, f"functions with over {limit} parameters: {long}"
