"""Every source file the docs cite exists: a module renamed or moved is cited by its new path (docs/*.md and the
README). A path is looked up as written from the repository's root, from addons/ and addons/gateway/ (the package's
own paths: `turn/runner.py`), or as the tail of a file's path (`ingress/` then `routing.py`); `../x.py` from a
package folder is the package's `x.py`."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
SOURCES = ("addons", "tests", "scripts")
CITED = re.compile(r"(?<![\w./-])((?:\.\./)*(?:[\w.-]+/)*[\w-]+\.py)\b")
# Files of other projects the docs name: mitmproxy's own (docs/mitmproxy-proposals.md), and the reader's program.
FOREIGN = {"addons/termlog.py", "http.py", "proxy/layers/http/_http1.py", "proxy/layers/websocket.py",
           "proxy/server.py", "app.py"}


def _files() -> list[str]:
    return [p.relative_to(ROOT).as_posix() for base in SOURCES for p in (ROOT / base).rglob("*.py")
            if "__pycache__" not in p.parts]


def _exists(cited: str, files: list[str]) -> bool:
    path = cited.lstrip("./") if cited.startswith("../") else cited
    return any((base / path).exists() for base in (ROOT, ROOT / "addons", ROOT / "addons" / "gateway")) \
        or any(f == path or f.endswith("/" + path) for f in files)


def cited_paths_missing(docs: list[Path]) -> list[str]:
    files = _files()
    return [f"{doc.name}:{n}: {m.group(1)}" for doc in docs
            for n, line in enumerate(doc.read_text().splitlines(), 1) for m in CITED.finditer(line)
            if m.group(1) not in FOREIGN and not _exists(m.group(1), files)]


def test_every_source_file_the_docs_cite_exists():
    assert cited_paths_missing(DOCS) == []


def test_a_renamed_module_is_caught(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("The keys live in `ingress/client_keys/team.py`; the guard is `../turn/guard.py`, "
                   "the check `tenancy/team.py`, counting in `../tokens.py`.\n")
    missing = [line.split(": ", 1)[1] for line in cited_paths_missing([doc])]
    assert missing == ["ingress/client_keys/team.py", "../turn/guard.py"]



def test_the_top_level_auth_folder_is_only_a_signpost():
    """auth/ holds no code any more (the credentials are addons/gateway/auth/, the pool upstream/pool/, qwen-auth
    cli/auth.py): only its README, and every path the README links to exists."""
    folder = ROOT / "auth"
    # (a checkout that held the code before may keep Python's byte-code cache there: not a file of the repo's)
    assert sorted(p.name for p in folder.iterdir() if p.name != "__pycache__") == ["README.md"]
    links = re.findall(r"\]\((\.\./[^)#]+)\)", (folder / "README.md").read_text())
    assert len(links) >= 4
    assert [link for link in links if not (folder / link).exists()] == []
