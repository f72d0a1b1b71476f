"""Nothing secret is committed: private keys, service-account keys, known token formats,
or long random values assigned to token/password/secret names.

Scans every file git tracks or would add (``git ls-files --cached --others
--exclude-standard``, so ``.env`` and ``.local/`` are out: they are ignored). Each hit
is reported as ``path:line: what``. Placeholders (``change-me...``) and ``${VAR}``
references are fine; a real value belongs in .env, .local/secrets.env or GCP Secret Manager.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MAX_BYTES = 2_000_000

# Patterns are written so that this file does not match them itself.
FINDINGS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("private key", re.compile(r"-{5}BEGIN (?:[A-Z]+ )*PRIVATE KEY-{5}")),
    ("GCP service-account key", re.compile(r'"type"\s*:\s*"service_account"|"private_key_id"\s*:\s*"[0-9a-f]{16,}"')),
    ("Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("GitHub token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b")),
    ("Slack token", re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}")),
    (
        "long random value assigned to a secret name",
        re.compile(
            r"(?i)[\w.-]*(?:token|password|passwd|secret|fernet|api_?key)[\w.-]*[\"']?\s*[:=]\s*[\"']?"
            r"(?:[0-9a-f]{32,}|[A-Za-z0-9+/_-]{40,}={0,2})(?![\w+/=-])"
        ),
    ),
    ("credentials in a URI", re.compile(r"://[\w.%-]+:(?:[0-9a-f]{32,}|[A-Za-z0-9+/_-]{40,})@")),
)


def repository_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [PROJECT_ROOT / name for name in listed.split("\0") if name and (PROJECT_ROOT / name).is_file()]


def scan_text(text: str, name: str) -> list[str]:
    """``name:line: finding`` for every suspicious line of ``text``."""
    return [
        f"{name}:{number}: {label}"
        for number, line in enumerate(text.splitlines(), start=1)
        for label, pattern in FINDINGS
        if pattern.search(line)
    ]


def scan(path: Path) -> list[str]:
    """Findings of one repository file (large and binary files are skipped)."""
    if path.stat().st_size > MAX_BYTES:
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return []
    return scan_text(text, str(path.relative_to(PROJECT_ROOT)))


def test_no_secrets_in_repository_files() -> None:
    if not (PROJECT_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    findings = [finding for path in repository_files() for finding in scan(path)]
    assert findings == [], "possible secrets committed:\n" + "\n".join(findings)


# Test values are assembled at run time so that this file itself stays clean.
FAKE_HEX = "0123456789abcdef" * 3


@pytest.mark.parametrize(
    ("line", "flagged"),
    [
        (f"R_BRMS_TOKEN={FAKE_HEX}", True),
        (f'"password": "{FAKE_HEX[:32]}"', True),
        (f"postgresql://analytics:{FAKE_HEX[:32]}@127.0.0.1:54329/analytics", True),
        ("-----BEGIN " + "RSA PRIVATE KEY-----", True),
        ('{"type": "service' + '_account", "project_id": "x"}', True),
        ("R_BRMS_TOKEN=change-me-r-brms-token", False),
        ('"password": "${R_BRMS_TOKEN}"', False),
        ("secret_sha256 = sha256(text)", False),
        ("commit 9f2c1e7", False),
    ],
)
def test_scanner_flags_real_values_not_placeholders(line: str, flagged: bool) -> None:
    assert bool(scan_text(line, "probe")) == flagged
