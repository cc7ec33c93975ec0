"""The one JWKS mechanism (PyJWT's PyJWKClient): cached, refetched for unknown kids at most once per cooldown."""

import pytest

from service.identity.jwks import SigningKeys, SigningKeysUnavailable, UnknownSigningKey
from tests.support.jwks import rsa_jwk, serving_jwks


def test_keys_are_fetched_once_and_served_from_the_cache():
    key, jwk = rsa_jwk("k1")
    with serving_jwks({"keys": [jwk]}) as endpoint:
        keys = SigningKeys(endpoint.url, None, timeout=5)

        found = [keys.rsa_key("k1") for _ in range(5)]

    assert all(k.public_numbers() == key.public_key().public_numbers() for k in found)
    assert len(endpoint.fetches) == 1


def test_unknown_kids_refetch_at_most_once_per_cooldown():
    _, jwk = rsa_jwk("k1")
    with serving_jwks({"keys": [jwk]}) as endpoint:
        keys = SigningKeys(endpoint.url, None, timeout=5, cooldown=60)
        keys.rsa_key("k1")

        for made_up in ("x1", "x2", "x3", "x4"):
            with pytest.raises(UnknownSigningKey):
                keys.rsa_key(made_up)

    assert len(endpoint.fetches) == 1  # the first fetch started the cooldown: no fetch for made-up kids


def test_a_key_published_after_the_first_fetch_is_found_by_one_refetch():
    _, old = rsa_jwk("k1")
    new_key, new = rsa_jwk("k2")
    with serving_jwks({"keys": [old]}) as endpoint:
        keys = SigningKeys(endpoint.url, None, timeout=5, cooldown=0)
        keys.rsa_key("k1")
        endpoint.jwks["keys"].append(new)

        found = keys.rsa_key("k2")

    assert found.public_numbers() == new_key.public_key().public_numbers()
    assert len(endpoint.fetches) == 2


@pytest.mark.parametrize(("status", "body", "refused"), [
    (500, None, SigningKeysUnavailable),
    (200, b"not json", SigningKeysUnavailable),
    (200, b'{"keys": [{"kty": "nope"}]}', SigningKeysUnavailable),
    (200, b"[1, 2]", UnknownSigningKey),            # PyJWT: a set that holds no key for the kid
    (200, b'{"keys": []}', SigningKeysUnavailable),
])
def test_an_unreadable_endpoint_is_a_refusal_never_an_unexpected_error(status, body, refused):
    with serving_jwks({"keys": []}) as endpoint:
        endpoint.status, endpoint.body = status, body
        keys = SigningKeys(endpoint.url, None, timeout=5)

        with pytest.raises(refused):
            keys.rsa_key("k1")


def test_an_unreachable_endpoint_is_unavailable():
    keys = SigningKeys("http://127.0.0.1:1/keys", None, timeout=2)

    with pytest.raises(SigningKeysUnavailable):
        keys.rsa_key("k1")


def test_only_rsa_keys_count():
    with serving_jwks({"keys": [{"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "kid": "k1"}]}) as endpoint:
        keys = SigningKeys(endpoint.url, None, timeout=5)

        with pytest.raises(UnknownSigningKey):
            keys.rsa_key("k1")
