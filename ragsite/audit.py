"""Known vulnerabilities in what ragsite installs: `make audit` (run by `make test`).

    python -m ragsite.audit

Audits the installed Python environments of the web app (.venv) and the inference service (.venv-inference),
which hold both requirement sets with everything they pull in, with pip-audit, and the front-end libraries
with `npm audit`. It fails on a known vulnerability that has a fixed version (something can be done about
it); one without a fix is reported and passes. When a vulnerability service cannot be reached the step says
so and passes: CI must not depend on it.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENVIRONMENTS = {
    "web app (.venv)": ROOT / ".venv",
    "inference service (.venv-inference)": ROOT / ".venv-inference",
}
TIMEOUT_S = 300


def _site_packages(venv: Path) -> Path | None:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    return found[0] if found else None


def pip_findings(venv: Path) -> tuple[list[str], list[str]] | None:
    """(fixable, unfixable) findings for one environment; None when the audit could not run."""
    site = _site_packages(venv)
    if site is None:
        print(f"audit: {venv.name} is not installed; skipped")
        return [], []
    command = [sys.executable, "-m", "pip_audit", "--path", str(site), "--format", "json"]
    command += ["--progress-spinner", "off"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return None
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        print(
            f"audit: pip-audit could not run: {result.stderr.strip().splitlines()[-1:] or result.returncode}"
        )
        return None
    dependencies = report.get("dependencies", [])
    if dependencies and all(dependency.get("skip_reason") for dependency in dependencies):
        # A package index without the vulnerability data (a mirror) answers "not found" for every package.
        print(f"audit: pip-audit found no vulnerability data: {dependencies[0]['skip_reason']}")
        return None
    fixable: list[str] = []
    unfixable: list[str] = []
    for dependency in dependencies:
        for vulnerability in dependency.get("vulns", []):
            line = f"{dependency['name']} {dependency.get('version', '?')}: {vulnerability['id']}"
            if vulnerability.get("fix_versions"):
                fixable.append(f"{line} (fixed in {', '.join(vulnerability['fix_versions'])})")
            else:
                unfixable.append(line)
    return fixable, unfixable


def npm_findings() -> tuple[list[str], list[str]] | None:
    npm = shutil.which("npm")
    if npm is None or not (ROOT / "package-lock.json").exists():
        print("audit: npm or package-lock.json missing; the front-end audit is skipped")
        return [], []
    try:
        result = subprocess.run(
            [npm, "audit", "--json", "--package-lock-only"],
            cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return None
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        print(f"audit: npm audit could not run: {(result.stderr.strip().splitlines() or ['?'])[0]}")
        return None
    if "error" in report:
        error = report["error"]
        print(f"audit: npm audit could not run: {error.get('summary') or error.get('detail') or error}")
        return None
    fixable: list[str] = []
    unfixable: list[str] = []
    for name, finding in report.get("vulnerabilities", {}).items():
        line = f"{name}: {finding.get('severity', '?')} ({finding.get('range', '')})"
        (fixable if finding.get("fixAvailable") else unfixable).append(line)
    return fixable, unfixable


def main() -> int:
    failed = False
    checks: dict[str, Callable[[], tuple[list[str], list[str]] | None]] = {
        label: functools.partial(pip_findings, venv) for label, venv in ENVIRONMENTS.items()
    }
    checks["front-end libraries (npm)"] = npm_findings
    for label, check in checks.items():
        findings = check()
        if findings is None:
            print(f"audit: {label}: the vulnerability service could not be reached; not audited this time")
            continue
        fixable, unfixable = findings
        for line in unfixable:
            print(f"audit: {label}: known, no fix yet: {line}")
        for line in fixable:
            print(f"audit: {label}: VULNERABLE, fix available: {line}")
        failed = failed or bool(fixable)
        if not fixable and not unfixable:
            print(f"audit: {label}: no known vulnerabilities")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
