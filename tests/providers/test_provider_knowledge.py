"""Provider knowledge lives in `providers/<name>/` and the catalog data, nowhere else.

Every string in the code outside those (docstrings aside) is searched for the names the
providers declare: their names and aliases, their settings' names and Portkey option
names. Only the registry may name them; the few other hits are listed below, each with
why it is not provider knowledge.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from prismgate.providers import get_provider, provider_names

SOURCE = Path(__file__).resolve().parents[2] / "src" / "prismgate"

# OpenAI's wire is the API the gateway speaks on both faces: naming it is not provider
# knowledge. `api_version` is a deployment field of every provider (LiteLLM's).
SPOKEN = {"openai", "mock", "api_version", *get_provider("openai").aliases}

# file → the declared names its strings may hold, and why.
ALLOWED = {
    # The registry: one line a provider.
    "providers/__init__.py": None,
    # "Azure-style" paths are a shape of URL the proxy serves, whoever serves the model.
    "proxy/openapi.py": {"azure"},
    "proxy/openapi_parts.py": {"azure"},
    # Credential shapes redacted from every log line, whatever the configured providers.
    "observability/redaction.py": {"xai"},
    # The S3 image store is an AWS client too: AWS's own credential variables and
    # botocore's argument names, which Bedrock's settings happen to share.
    "storage/s3_client.py": {
        "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "aws_region",
    },
}  # fmt: skip


def declared_names() -> set[str]:
    names: set[str] = set()
    for name in provider_names():
        provider = get_provider(name)
        names |= {name, *provider.aliases}
        names |= {setting.name for setting in provider.settings}
        names |= {setting.portkey for setting in provider.settings if setting.portkey}
    return {name.lower() for name in names} - SPOKEN


def strings_of(path: Path) -> list[tuple[int, str]]:
    """Every string literal in `path` but its docstrings."""
    tree = ast.parse(path.read_text())
    docstrings = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            docstrings.add(id(body[0].value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def test_no_provider_is_named_outside_its_folder_and_the_registry() -> None:
    names = sorted(declared_names(), key=len, reverse=True)
    pattern = re.compile(
        r"(?<![a-z0-9_])(" + "|".join(map(re.escape, names)) + r")(?![a-z0-9_])", re.IGNORECASE
    )
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        where = path.relative_to(SOURCE).as_posix()
        if where.startswith("providers/") and where != "providers/__init__.py":
            continue  # a provider's own folder (and the shared contract beside them)
        allowed = ALLOWED.get(where, set())
        for line, text in strings_of(path):
            for match in pattern.finditer(text):
                if allowed is not None and match.group(1).lower() not in allowed:
                    found.append(f"{where}:{line}: {match.group(1)!r} in {text[:60]!r}")
    assert not found, "provider knowledge outside providers/:\n" + "\n".join(found)


def test_the_check_finds_a_name_where_it_should_not_be(tmp_path: Path) -> None:
    leak = tmp_path / "leak.py"
    leak.write_text('"""A docstring may say bedrock."""\nREGION = "aws_region_name"\n')
    hits = [text for _, text in strings_of(leak) if "aws_region_name" in text]
    assert hits == ["aws_region_name"]
    assert "aws_region_name" in declared_names() and "bedrock" in declared_names()
