"""The documentation site builds in strict mode: no broken link, missing anchor or page left out of
the navigation. Skipped without the docs extra (pip install ".[docs]"); CI installs it."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_site_builds_in_strict_mode(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "index.html").is_file()


def test_every_page_is_in_the_navigation():
    """Strict mode warns about a page missing from the nav; this says which, without MkDocs."""
    listed = set(re.findall(r":\s*([\w-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(encoding="utf-8"), flags=re.M))
    pages = {path.name for path in (ROOT / "docs").glob("*.md")}
    assert pages == listed


def test_the_site_loads_nothing_from_the_network_when_viewed():
    """Material's default fonts come from Google at view time; the site turns them off."""
    assert re.search(r"^\s+font: false\b", (ROOT / "mkdocs.yml").read_text(encoding="utf-8"), flags=re.M)
