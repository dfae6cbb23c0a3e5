"""A git repository's documents on one branch: Markdown, reStructuredText, AsciiDoc, HTML, text and PDF files.

The repository is fetched into a bare cache repository (cache_dir) with the `git` CLI, so a sync after new
commits fetches only what is new; `git ls-tree -r -l` lists every file with its blob id (the version) and its
size, and only new or changed blobs are read (`git cat-file --batch`). A file over the size limit is reported
from its listed size, never read.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import ClassVar

from .base import ConnectorError, Found, SourceConfig

DOCUMENT_EXTENSIONS = frozenset(
    {".md", ".markdown", ".rst", ".adoc", ".asciidoc", ".html", ".htm", ".txt", ".pdf"}
)
DEFAULT_TIMEOUT_S = 600.0
# The branch (or HEAD) fetched is kept under this ref of the cache repository.
TIP_REF = "refs/ragsite/tip"
_PASSED_THROUGH = (
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "GIT_SSL_CAINFO",
)
_ALLOWED_LOCATION = re.compile(r"^(https?://|ssh://|git://|file://|/|[\w.-]+@[\w.-]+:)")
_BRANCH = re.compile(r"^(?!-)(?!.*\.\.)[\w./-]+$")


def _size(size: int) -> str:
    if size >= 2**30:
        return f"{size / 2**30:,.1f} GB"
    if size >= 2**20:
        return f"{size / 2**20:,.1f} MB"
    return f"{max(size, 1) / 1024:,.0f} KB"


def _wanted(path: str, include: tuple[str, ...], exclude: tuple[str, ...]) -> bool:
    if PurePosixPath(path).suffix.lower() not in DOCUMENT_EXTENSIONS:
        return False
    if include and not any(fnmatchcase(path, pattern) for pattern in include):
        return False
    return not any(fnmatchcase(path, pattern) for pattern in exclude)


class GitConnector:
    """location: a repository URL (https, ssh, git, file) or a local path; options: `branch` (default: the
    remote's HEAD), `timeout_s` (per git command, default 600); credentials: `username` and `password` (or a
    token) for HTTPS, sent as a header through git's environment, never on a command line."""

    kind: ClassVar[str] = "git"

    def __init__(self, config: SourceConfig) -> None:
        self.config = config
        self.location = config.location.strip()
        self.branch = str(config.options.get("branch") or "").strip()
        self.timeout_s = float(config.options.get("timeout_s") or DEFAULT_TIMEOUT_S)  # type: ignore[arg-type]

    # --- running git ---------------------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/nonexistent"),
            # Never wait for a password or a host-key answer: a sync must fail, not hang.
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "/bin/false",
            "SSH_ASKPASS": "/bin/false",
            "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o ConnectTimeout=30",
            # No ext:: or fd:: transports: a location must not run commands.
            "GIT_ALLOW_PROTOCOL": "file:git:http:https:ssh",
            "GIT_CONFIG_NOSYSTEM": "1",
            "LC_ALL": "C",
        }
        # A proxy and certificate authorities of the workers' own, where they have them.
        for name in _PASSED_THROUGH:
            if name in os.environ:
                env[name] = os.environ[name]
        username = self.config.credentials.get("username", "")
        password = self.config.credentials.get("password", "") or self.config.credentials.get("token", "")
        if password:
            basic = base64.b64encode(f"{username or 'git'}:{password}".encode()).decode()
            env.update(
                {
                    "GIT_CONFIG_COUNT": "1",
                    "GIT_CONFIG_KEY_0": "http.extraHeader",
                    "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
                }
            )
        return env

    def _git(self, *args: str, cwd: Path | None = None, what: str) -> bytes:
        """Run git in a process group of its own, killed whole (its transport helpers too) at the timeout."""
        try:
            process = subprocess.Popen(
                ["git", *args],
                cwd=cwd,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise ConnectorError(
                "The git program is not installed on the workers (apt-get install git)."
            ) from None
        try:
            stdout, stderr = process.communicate(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise ConnectorError(
                f"git {what} did not finish within {self.timeout_s:.0f} s. Check that {self.location} is "
                "reachable from the workers, or raise the source's timeout_s option."
            ) from None
        if process.returncode != 0:
            raise ConnectorError(self._explain(what, stderr.decode(errors="replace")))
        return stdout

    def _explain(self, what: str, stderr: str) -> str:
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        fatal = [line.removeprefix("fatal:").strip() for line in lines if line.startswith("fatal:")]
        detail = fatal[0] if fatal else (lines[-1] if lines else "no message")
        lowered = stderr.lower()
        if "couldn't find remote ref" in lowered:
            return (
                f"The branch “{self.branch or 'HEAD'}” does not exist in {self.location}. "
                "Check the source's branch option."
            )
        if "authentication failed" in lowered or "could not read username" in lowered or " 401" in lowered:
            return (
                f"{self.location} refused the credentials ({detail}). Check the source's user name and "
                "password or token."
            )
        if "does not appear to be a git repository" in lowered or "not found" in lowered:
            return (
                f"{self.location} is not a git repository that the workers can read ({detail}). "
                "Check the location."
            )
        if "could not resolve host" in lowered or "unable to access" in lowered or "connection" in lowered:
            return f"{self.location} cannot be reached from the workers ({detail})."
        return f"git {what} failed for {self.location}: {detail}"

    def _cache_repository(self) -> Path:
        base = Path(self.config.cache_dir) if self.config.cache_dir else Path(tempfile.gettempdir())
        key = hashlib.sha256(self.location.encode()).hexdigest()[:24]
        repository = base / "git" / f"{key}.git"
        if not (repository / "HEAD").exists():
            repository.parent.mkdir(parents=True, exist_ok=True)
            self._git("init", "--quiet", "--bare", str(repository), what="init of the cache")
        return repository

    def _check_location(self) -> None:
        if not self.location or self.location.startswith("-") or not _ALLOWED_LOCATION.match(self.location):
            raise ConnectorError(
                f"“{self.location}” is not a repository location: give an https://, ssh://, git:// or "
                "file:// URL, user@host:path, or an absolute path on the workers."
            )
        if self.branch and not _BRANCH.match(self.branch):
            raise ConnectorError(f"“{self.branch}” is not a branch name. Check the source's branch option.")

    def _fetch(self) -> Path:
        self._check_location()
        repository = self._cache_repository()
        ref = f"refs/heads/{self.branch}" if self.branch else "HEAD"
        self._git(
            "fetch",
            "--quiet",
            "--no-tags",
            "--force",
            "--",
            self.location,
            f"+{ref}:{TIP_REF}",
            cwd=repository,
            what="fetch",
        )
        return repository

    # --- the scan ------------------------------------------------------------------------------------------

    def _list(self, repository: Path) -> Iterator[tuple[str, str, int]]:
        """(path, blob id, size) of every regular file on the fetched branch."""
        listing = self._git("ls-tree", "-r", "-l", "-z", TIP_REF, cwd=repository, what="ls-tree")
        for entry in listing.split(b"\0"):
            if not entry:
                continue
            meta, _, raw_path = entry.partition(b"\t")
            mode, kind, oid, size = meta.split()
            if kind != b"blob" or mode == b"120000":  # submodules and symbolic links are not files
                continue
            yield raw_path.decode(errors="surrogateescape"), oid.decode(), int(size)

    def scan(self, *, previous: Mapping[str, str]) -> Iterator[Found]:
        repository = self._fetch()
        limit = self.config.max_item_bytes
        wanted = [
            (path, oid, size)
            for path, oid, size in self._list(repository)
            if _wanted(path, self.config.include, self.config.exclude)
        ]
        to_read: list[tuple[str, str]] = []
        for path, oid, size in wanted:
            filename = PurePosixPath(path).name
            if previous.get(path) == oid:
                yield Found(identity=path, version=oid, filename=filename)
            elif limit and size > limit:
                yield Found(
                    identity=path,
                    version=oid,
                    filename=filename,
                    error=f"{path} is {_size(size)}; the limit for one document is {_size(limit)}. "
                    "Split the file, or exclude it with an exclude pattern.",
                )
            elif size == 0:
                yield Found(identity=path, version=oid, filename=filename, error=f"{path} is empty.")
            else:
                to_read.append((path, oid))
        for (path, oid), content in zip(
            to_read, self._read_blobs(repository, [o for _, o in to_read]), strict=True
        ):
            yield Found(identity=path, version=oid, filename=PurePosixPath(path).name, content=content)

    def _read_blobs(self, repository: Path, oids: list[str]) -> Iterator[bytes]:
        """The content of each blob, in order, from one `git cat-file --batch` (killed after the timeout)."""
        if not oids:
            return
        process = subprocess.Popen(
            ["git", "cat-file", "--batch"],
            cwd=repository,
            env=self._env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert process.stdin is not None and process.stdout is not None
        watchdog = threading.Timer(self.timeout_s, process.kill)
        watchdog.start()
        writer = threading.Thread(target=self._write_oids, args=(process.stdin, oids), daemon=True)
        writer.start()
        try:
            for oid in oids:
                header = process.stdout.readline().split()
                if len(header) != 3 or header[1] != b"blob":
                    raise ConnectorError(
                        f"git could not read blob {oid} of {self.location} (within {self.timeout_s:.0f} s). "
                        "Sync again; if it keeps failing, the cache may be damaged: remove it on the workers."
                    )
                content = process.stdout.read(int(header[2]))
                process.stdout.read(1)  # the newline after each object
                yield content
        finally:
            watchdog.cancel()
            process.kill()
            process.wait()
            writer.join(timeout=5)

    @staticmethod
    def _write_oids(stream: object, oids: list[str]) -> None:
        try:
            for oid in oids:
                stream.write(f"{oid}\n".encode())  # type: ignore[attr-defined]
            stream.close()  # type: ignore[attr-defined]
        except (BrokenPipeError, ValueError, OSError):
            pass
