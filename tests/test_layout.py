"""The package's layers: each imports only the layers before it, and core never names a plugin."""

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).parents[1] / "core"
#: the pipeline, in order; the top-level modules (records, errors, …) and the plugin machinery are beneath all
LAYERS = ("graph", "cost", "pruning", "training", "run")
BENEATH = ("plugin",)
FACE = {"__init__", "__main__", "cli"}  # with the testing package, the face: it may import every layer


def imported_layers(path: Path) -> set[str]:
    """The core layers (or top-level modules) a module imports, by relative or absolute import."""
    package = path.relative_to(CORE).parent.parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                parts = (*base, *(node.module.split(".") if node.module else ()))
                names = [(*parts, alias.name) for alias in node.names] if not node.module else [parts]
            elif node.module and node.module.startswith("prunekit"):
                names = [tuple(node.module.split(".")[1:])]
            else:
                continue
            found |= {name[0] for name in names if name}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("prunekit.")}
    return found


MODULES = sorted(p for p in CORE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(CORE)))
def test_dependencies_point_one_way(path):
    parts = path.relative_to(CORE).parts
    imports = imported_layers(path)
    assert "plugins" not in imports, f"{path} imports a plugin"
    if parts[0] in ("testing", "cli") or (len(parts) == 1 and path.stem in FACE):
        return  # the package's face uses every layer
    if len(parts) == 1 or parts[0] in BENEATH:  # a top-level module, or the plugin machinery
        assert not imports & set(LAYERS), f"{path.name} is beneath the layers but imports {imports & set(LAYERS)}"
        return
    layer = LAYERS.index(parts[0])
    later = {name for name in imports if name in LAYERS and LAYERS.index(name) > layer}
    assert not later, f"{'/'.join(parts)} (layer {parts[0]}) imports later layers {later}"


@pytest.mark.parametrize("layer", ["graph", "cost", "pruning"])
def test_the_pipeline_beneath_the_run_sees_layer_types_not_the_plugin_manager(layer):
    """graph/, cost/ and pruning/ get the plugins they need through prunekit.seam's protocols."""
    for path in sorted((CORE / layer).rglob("*.py")):
        assert "plugin" not in imported_layers(path), f"{path.relative_to(CORE)} imports the plugin machinery"


def test_no_module_is_long():
    long = {str(p.relative_to(CORE)): n for p in MODULES if (n := len(p.read_text().splitlines())) > 400}
    assert not long


def test_one_loop_proposes_and_cuts_for_every_door():
    """Only the pruning session steps: a second "until the budget is done" loop would propose too."""
    proposing = set()
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "propose":
                proposing.add(str(path.relative_to(CORE)))
    assert proposing == {"pruning/session.py", "pruning/step.py"}  # (a step cut without a proposal makes one)


PLUGIN_SOURCES = sorted(
    [*(CORE.parent / "plugins").rglob("*.py"), *(CORE.parent / "examples" / "plugin-template" / "src").rglob("*.py")]
)


@pytest.mark.parametrize("path", PLUGIN_SOURCES, ids=lambda p: str(p.relative_to(CORE.parent)))
def test_plugins_import_prunekit_through_its_plugin_face_only(path):
    """Built-in plugins are registered like third-party ones, and written like them too."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    assert {m for m in found if m.split(".")[0] == "prunekit"} <= {"prunekit.plugin", "prunekit.testing"}, path
