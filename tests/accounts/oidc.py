"""OpenID Connect providers the SSO tests start on 127.0.0.1.

`start_oidc_provider`: the real npm package oidc-provider under Node (tests/accounts/oidc_provider.mjs), whose
accounts the test sets. `ForgingProvider`: a small Python provider whose token endpoint answers whatever ID
token the test crafted (wrong audience, issuer, signature...), to prove the site accepts none of them.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.processes import ROOT, LoopbackServer, _spawn

PROVIDER_SCRIPT = Path(__file__).resolve().parent / "oidc_provider.mjs"
CLIENT_ID = "ragsite-test"
CLIENT_SECRET = "test-client-secret-0123456789"


@dataclass
class OidcProviderProcess(LoopbackServer):
    def account_set(
        self, account_id: str, *, email: str, groups: list[str], disabled: bool = False, name: str = ""
    ) -> None:
        """Create or change an account at the provider (its groups, or whether it is disabled)."""
        response = httpx.put(
            f"{self.url}/test-admin/accounts/{account_id}",
            json={"email": email, "groups": groups, "disabled": disabled, "name": name or account_id},
            timeout=10,
        )
        response.raise_for_status()


def start_oidc_provider(*, port: int, log_dir: Path, redirect_uris: list[str]) -> OidcProviderProcess:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is missing: apt-get install nodejs npm (mk/frontend.mk needs it too)")
    if not (ROOT / "node_modules" / "oidc-provider").is_dir():
        raise RuntimeError("node_modules/oidc-provider is missing: run `make frontend` (npm ci)")
    log_path = log_dir / f"oidc-provider-{port}.log"
    env = {
        "PATH": "/usr/bin:/bin",
        "PORT": str(port),
        "CLIENT_ID": CLIENT_ID,
        "CLIENT_SECRET": CLIENT_SECRET,
        "REDIRECT_URIS": " ".join(redirect_uris),
    }
    process = _spawn([node, str(PROVIDER_SCRIPT)], env=env, log_path=log_path)
    server = OidcProviderProcess(process=process, log_path=log_path, port=port)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"oidc provider exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.url}/.well-known/openid-configuration", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise TimeoutError(f"oidc provider not answering after 60s:\n{server.log()}")
        time.sleep(0.2)


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class ForgingProvider:
    """Discovery, JWKS, token and userinfo endpoints; the token endpoint answers `id_token` as set."""

    port: int
    key: rsa.RSAPrivateKey = field(default_factory=new_rsa_key)
    kid: str = "provider-key"
    id_token: str = ""
    userinfo: dict[str, Any] = field(default_factory=dict)
    token_status: int = 200
    token_requests: list[dict[str, str]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def sign(
        self, claims: dict[str, Any], *, key: Any = None, kid: str | None = None, alg: str = "RS256"
    ) -> str:
        """An ID token with these claims, signed with the provider's key unless another is given."""
        return jwt.encode(
            claims, key if key is not None else self.key, algorithm=alg, headers={"kid": kid or self.kid}
        )

    def claims(self, *, nonce: str, client_id: str, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": client_id,
            "sub": "alice",
            "iat": now,
            "exp": now + 300,
            "nonce": nonce,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def start(self) -> None:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _json(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    self._json(
                        200,
                        {
                            "issuer": provider.issuer,
                            "authorization_endpoint": f"{provider.issuer}/auth",
                            "token_endpoint": f"{provider.issuer}/token",
                            "userinfo_endpoint": f"{provider.issuer}/userinfo",
                            "jwks_uri": f"{provider.issuer}/jwks",
                        },
                    )
                elif self.path == "/jwks":
                    jwk = json.loads(RSAAlgorithm.to_jwk(provider.key.public_key()))
                    self._json(200, {"keys": [{**jwk, "kid": provider.kid, "alg": "RS256", "use": "sig"}]})
                elif self.path == "/userinfo":
                    self._json(200, provider.userinfo)
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                provider.token_requests.append({"path": self.path, "body": body})
                if provider.token_status != 200:
                    self._json(provider.token_status, {"error": "invalid_grant"})
                else:
                    self._json(
                        200, {"id_token": provider.id_token, "access_token": "access", "token_type": "Bearer"}
                    )

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
