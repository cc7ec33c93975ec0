"""A loopback JWKS endpoint for key-handling tests: serves whatever key set the test holds, counts fetches.

    with serving_jwks({"keys": [jwk]}) as endpoint:
        keys = SigningKeys(endpoint.url, None, timeout=5)
        endpoint.jwks["keys"].append(rotated)      # what the next fetch will serve
        endpoint.status = 500                      # or make it fail
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.support.loopback import serving


@dataclass
class JwksEndpoint:
    url: str
    jwks: dict
    status: int = 200
    body: bytes | None = None          # served instead of the key set when set (garbage, say)
    fetches: list[str] = field(default_factory=list)


def rsa_jwk(kid: str) -> tuple[rsa.RSAPrivateKey, dict]:
    """A fresh RSA key and its public JWK under ``kid``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key, {**json.loads(RSAAlgorithm.to_jwk(key.public_key())), "kid": kid, "use": "sig", "kty": "RSA"}


@contextmanager
def serving_jwks(jwks: dict) -> Iterator[JwksEndpoint]:
    """Serve ``jwks`` over HTTP on loopback until the block ends."""
    endpoint = JwksEndpoint(url="", jwks=jwks)

    def answer(path: str, client_port: int) -> tuple[int, dict[str, str], bytes]:
        endpoint.fetches.append(path)
        return endpoint.status, {}, endpoint.body if endpoint.body is not None else json.dumps(endpoint.jwks).encode()

    with serving(answer) as base_url:
        endpoint.url = f"{base_url}/common/discovery/v2.0/keys"
        yield endpoint
