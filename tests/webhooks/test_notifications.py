"""Pure parsing of notification collections (shapes from Microsoft's docs); verification is in Redis
(tests/webhooks/test_shared_rule.py)."""

from __future__ import annotations

import json

import pytest

from service.webhooks.notifications import BadPayload, parse_collection, validation_token

# The changeNotificationCollection sample of the "Receive change notifications through webhooks" page.
DOCUMENTED = {
    "value": [
        {
            "id": "lsgTZMr9KwAAA",
            "subscriptionId": "{subscription_guid}",
            "subscriptionExpirationDateTime": "2016-03-19T22:11:09.952Z",
            "clientState": "secretClientValue",
            "changeType": "created",
            "resource": "users/{user_guid}@{tenant_guid}/messages/{long_id_string}",
            "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
            "resourceData": {
                "@odata.type": "#Microsoft.Graph.Message",
                "@odata.id": "Users/{user_guid}@{tenant_guid}/Messages/{long_id_string}",
                "@odata.etag": "W/\"CQAAABYAAADkrWGo7bouTKlsgTZMr9KwAAAUWRHf\"",
                "id": "{long_id_string}",
            },
        }
    ]
}

LIFECYCLE = {
    "value": [
        {
            "subscriptionId": "7a6ad7c5-2c3f-4d61-9bc6-0f1d8e2c5a11",
            "subscriptionExpirationDateTime": "2019-03-20T11:00:00.0000000Z",
            "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
            "clientState": "secretClientValue",
            "lifecycleEvent": "reauthorizationRequired",
        }
    ]
}


def test_parses_the_documented_change_notification():
    collection = parse_collection(json.dumps(DOCUMENTED).encode())
    (item,) = collection.items
    assert item.subscription_id == "{subscription_guid}"
    assert item.change_type == "created"
    assert item.resource_id == "{long_id_string}"
    assert item.tenant_id == "84bd8158-6d4d-4958-8b9f-9d6445542f95"
    assert collection.malformed == 0 and collection.validation_tokens == ()


def test_parses_the_documented_lifecycle_notification():
    collection = parse_collection(json.dumps(LIFECYCLE).encode(), lifecycle=True)
    assert [i.lifecycle_event for i in collection.items] == ["reauthorizationRequired"]


@pytest.mark.parametrize("body", [
    b"", b"not json", b"[]", b'{"value": {}}', b'{"values": []}', b'"value"',
    b'{"value": [], "validationTokens": "abc"}', b'{"value": [], "validationTokens": [1]}',
    b"\xff\xfe", b"[" * 100_000,
])
def test_rejects_what_is_not_a_collection(body):
    with pytest.raises(BadPayload):
        parse_collection(body)


def test_counts_malformed_items_without_failing_the_batch():
    good = DOCUMENTED["value"][0]
    body = {"value": [good, "x", {}, {**good, "subscriptionId": 5}, {**good, "changeType": "renamed"},
                      {**good, "clientState": ["x"]}, {**good, "encryptedContent": "x"}]}
    collection = parse_collection(json.dumps(body).encode())
    assert len(collection.items) == 1
    assert collection.malformed == 6


def test_change_items_are_not_lifecycle_items():
    collection = parse_collection(json.dumps(DOCUMENTED).encode(), lifecycle=True)
    assert collection.items == () and collection.malformed == 1


def test_validation_token_is_returned_decoded_and_bounded():
    assert validation_token({"validationToken": "a b<c>"}) == "a b<c>"
    assert validation_token({}) is None
    with pytest.raises(BadPayload):
        validation_token({"validationToken": "x" * 5000})
    with pytest.raises(BadPayload):
        validation_token({"validationToken": ""})


@pytest.mark.parametrize("odd", [["a", "b"], {"id": "x"}, 7, True])
def test_a_lifecycle_item_whose_subscription_id_is_not_text_is_malformed(odd):
    """Seen by the fuzz test: a list as ``subscriptionId`` once made the lifecycle route answer 500."""
    good = LIFECYCLE["value"][0]
    collection = parse_collection(json.dumps({"value": [{**good, "subscriptionId": odd}, good]}).encode(),
                                  lifecycle=True)
    assert collection.malformed == 1
    assert [i.subscription_id for i in collection.items] == [good["subscriptionId"]]
