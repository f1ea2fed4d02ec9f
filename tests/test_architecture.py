"""The folders are the stages: imports run one way (cli -> batch/train -> stages -> core), with no circles and no
private name imported across modules. Read from the source (every import, those inside functions included), so
nothing needs importing."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pipeline"

# lowest first; a module may import its own room, or a room of a lower layer (never one beside or above it)
LAYERS = [
    ("core",),
    ("io",),
    ("preprocess", "postprocess", "synth"),
    ("spine",),                  # stage 1: the canal
    ("inference",),              # stage 2: the plexus network on the canal's crop
    ("export",),
    ("evaluation",),
    ("batch", "train"),
    ("cli",),
]
ENTRY_POINTS = {"pipeline.train.__main__", "pipeline.cli.__main__"}  # ``python -m pipeline.train``: the command line, at the edge


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every ``import``/``from ... import`` of ``pipeline``."""
    is_pkg = path.name == "__init__.py"
    here = name.split(".") if is_pkg else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "pipeline"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "pipeline":
                continue
            names = [a.name for a in node.names]
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in known]  # ``from . import module``
            found += [(s, [], node.lineno) for s in subs]
            rest = [n for n in names if f"{target}.{n}" not in known]
            if rest or not subs:
                found.append((target, rest, node.lineno))
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: {t for t, _, _ in imports_of(m, p, known) if t != m and t in known} for m, p in mods.items()}


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""  # "" is ``pipeline`` itself: only its __version__


def layer(module: str) -> int:
    r = room(module)
    if r == "":
        return -1
    return next(k for k, rooms in enumerate(LAYERS) if r in rooms)


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``g`` as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(g.get(m, ())):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state and (c := visit(t)):
                return c
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(g):
        if m not in state and (c := visit(m)):
            return c
    return None


def wrong_way(g: dict[str, set[str]]) -> list[str]:
    """Every import into a room beside or above the importer's (``a -> b``)."""
    bad = []
    for m, targets in sorted(g.items()):
        if m in ENTRY_POINTS:
            continue
        for t in sorted(targets):
            if room(t) != room(m) and layer(t) >= layer(m):
                bad.append(f"{m} -> {t}")
    return bad


def test_every_room_has_a_layer():
    rooms = {room(m) for m in modules()} - {""}
    placed = {r for rooms_ in LAYERS for r in rooms_}
    assert rooms <= placed, f"rooms without a layer in LAYERS: {sorted(rooms - placed)}"
    assert [p.name for p in PACKAGE.glob("*.py")] == ["__init__.py"], \
        "only __init__.py lies at the top of pipeline/: every stage, and the command line, has its folder"


def test_no_import_circles():
    cycle = find_cycle(graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_imports_run_one_way():
    assert wrong_way(graph()) == []


def test_running_a_model_never_imports_training():
    g = graph()
    seen, todo = set(), ["pipeline.batch.local", "pipeline.batch.ray_runner", "pipeline.inference.segmentation"]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += g[m]
    assert not [m for m in seen if room(m) in ("train", "cli")]


def test_no_private_name_imported_across_modules():
    mods = modules()
    known = set(mods)
    bad = [f"{m}:{line} imports {n} from {t}" for m, p in mods.items() for t, names, line in imports_of(m, p, known)
           for n in names if n.startswith("_") and not n.startswith("__") and t != m]
    assert bad == []


def test_the_checks_catch_a_circle_and_an_upward_import():
    assert find_cycle({"pipeline.io.a": {"pipeline.io.b"}, "pipeline.io.b": {"pipeline.io.a"}}) == [
        "pipeline.io.a", "pipeline.io.b", "pipeline.io.a"]
    assert find_cycle({"pipeline.io.a": {"pipeline.core.b"}, "pipeline.core.b": set()}) is None
    assert wrong_way({"pipeline.core.volume": {"pipeline.io.formats"}, "pipeline.io.formats": set()}) == [
        "pipeline.core.volume -> pipeline.io.formats"]
    assert wrong_way({"pipeline.batch.local": {"pipeline.train.loop"}}) == [
        "pipeline.batch.local -> pipeline.train.loop"]  # beside, not below
