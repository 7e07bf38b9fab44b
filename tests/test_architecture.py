"""The architecture holds: import-linter's contracts (pyproject.toml), and no import cycle between
modules, counting the imports made inside functions and the ones made by name at run time."""
import os

import pytest

importlinter = pytest.importorskip("importlinter", reason="import-linter (the test extra) is not installed")
grimp = pytest.importorskip("grimp", reason="import-linter (the test extra) is not installed")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_import_contracts_are_kept(capsys):
    from importlinter.cli import EXIT_STATUS_SUCCESS, lint_imports

    status = lint_imports(config_filename=os.path.join(ROOT, "pyproject.toml"), no_cache=True, no_logo=True)
    assert status == EXIT_STATUS_SUCCESS, capsys.readouterr().out


def import_graph():
    """Every import between cnnfruit's modules: grimp reads them all, those inside functions too;
    the two made by name (the lazy public API, the command group) are added here."""
    import cnnfruit
    from cnnfruit.cli.group import COMMAND_MODULES

    graph = grimp.build_graph("cnnfruit", cache_dir=None)
    for module in sorted(set(cnnfruit._EXPORTS.values())):
        graph.add_import(importer="cnnfruit", imported=f"cnnfruit.{module}")
    for module, _ in COMMAND_MODULES.values():
        graph.add_import(importer="cnnfruit.cli.group", imported=f"cnnfruit.cli.{module}")
    return graph


def cycles(graph):
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(module):
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_module_imports_itself_through_others():
    graph = import_graph()
    assert graph.direct_import_exists(importer="cnnfruit.cli.train", imported="cnnfruit.training.run")  # in a function
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    graph = import_graph()
    graph.add_import(importer="cnnfruit.errors", imported="cnnfruit.cli.group")  # the group imports errors
    assert any({"cnnfruit.errors", "cnnfruit.cli.group"} <= set(cycle) for cycle in cycles(graph))
