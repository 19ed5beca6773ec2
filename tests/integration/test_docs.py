"""The documentation website (mkdocs.yml, docs/) builds with `mkdocs build --strict`, offline:
every link between pages and every anchor resolves, and the API pages render the docstrings."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository


def test_mkdocs_build_strict_succeeds_and_writes_every_page(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", ROOT / "mkdocs.yml"]
        + ["-d", site],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stderr[-4000:]}"
    pages = sorted((ROOT / "docs").rglob("*.md"))
    assert len(pages) >= 10
    for page in pages:
        relative = page.relative_to(ROOT / "docs").with_suffix("")
        html = site / ("index.html" if relative.name == "index" else relative / "index.html")
        assert html.is_file(), f"{page} was not built"
    # the API pages hold the docstrings, not an empty `::: module` placeholder
    export = (site / "api" / "export" / "index.html").read_text()
    assert "save_run" in export and "doc-function" in export
    assert "markdown_table" in (site / "api" / "backbones" / "index.html").read_text()
