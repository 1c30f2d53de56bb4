import re
from pathlib import Path

import pytest

from requests_app.models import PrivacyRequest
from requests_app.models.privacy_request import new_reference
from tests.conftest import file_request

ROOT = Path(__file__).resolve().parent.parent


def test_references_are_long_random_and_unambiguous():
    refs = {new_reference() for _ in range(5000)}
    assert len(refs) == 5000
    for ref in list(refs)[:200]:
        assert re.fullmatch(r"PP-[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}", ref)


@pytest.mark.django_db
def test_each_request_gets_its_own_reference():
    first, second = file_request(), file_request()
    assert first.reference != second.reference
    assert PrivacyRequest.objects.get(reference=first.reference) == first


def test_the_committed_lifecycle_diagram_matches_the_machine(settings):
    from requests_app.management.commands.lifecycle_diagram import render

    committed = (ROOT / "docs" / "lifecycle.md").read_text()
    assert committed == render(), "run `make lifecycle-diagram` and commit docs/lifecycle.md"


def test_every_setting_is_documented():
    text = (ROOT / "privacyportal" / "settings.py").read_text()
    names = set(re.findall(r'env(?:str|bool|int|list)?\("([A-Z_]+)"', text))
    documented = (ROOT / "docs" / "configuration.md").read_text()
    missing = sorted(n for n in names if f"`{n}`" not in documented)
    assert not missing, f"undocumented settings: {missing}"


def test_the_committed_architecture_page_matches_the_code(settings):
    from requests_app.management.commands.architecture_doc import render

    committed = (ROOT / "docs" / "architecture.md").read_text()
    assert committed == render(), "run `make architecture-doc` and commit docs/architecture.md"


def test_the_architecture_contracts_hold_and_list_no_exceptions():
    """import-linter's contracts (pyproject.toml) are kept, and none of them is kept
    by an `ignore_imports` list."""
    import subprocess
    import sys
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    assert len(contracts) >= 5
    assert not [c["name"] for c in contracts if c.get("ignore_imports")]
    result = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:]
    assert f"Contracts: {len(contracts)} kept, 0 broken." in result.stdout


def test_modules_and_functions_stay_small_enough_to_read():
    """Outside migrations and the demo company's data, no module reaches 500 lines
    and no function 60 (the demo data generator is the one exception)."""
    import ast

    app = ROOT / "requests_app"
    long_modules, long_functions = [], []
    for path in app.rglob("*.py"):
        relative = path.relative_to(app)
        if relative.parts[0] in ("migrations", "demo"):
            continue
        text = path.read_text()
        if text.count("\n") >= 500:
            long_modules.append(str(relative))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.end_lineno - node.lineno + 1 > 60:
                    long_functions.append(f"{relative}:{node.name}")
    assert long_modules == [] and long_functions == []


def test_test_modules_share_helpers_through_conftest_only():
    """A helper two test modules need lives in a conftest file (a fixture, or beside
    the fixtures), never imported from another test module."""
    offenders = [f"{path.relative_to(ROOT)}:{n}"
                 for path in (ROOT / "tests").rglob("test_*.py")
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if re.match(r"\s*(from tests(\.\w+)*\.test_\w+ import|import tests(\.\w+)*\.test_)",
                             line)]
    assert offenders == []
