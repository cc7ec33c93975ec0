import redis

from service.app import create_app
from service.runtime import Runtime


def test_healthz_answers_while_the_process_lives(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_is_200_when_mongodb_and_redis_answer(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.get_json()["checks"] == {"mongodb": "ok", "redis": "ok"}


def test_readyz_names_redis_when_it_is_down_without_hanging(make_settings, db):
    # A port nothing listens on: a refused connection, reported as 503 and never as a hang or a secret.
    settings = make_settings(redis_url="redis://:hunter2-secret@127.0.0.1:1/0")
    down = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=2)
    app = create_app(runtime=Runtime(settings, db=db, redis_conn=down))

    response = app.test_client().get("/readyz")

    assert response.status_code == 503
    body = response.get_json()
    assert body["failed"] == ["redis"]
    assert body["checks"]["mongodb"] == "ok"
    assert "hunter2" not in response.get_data(as_text=True)


def test_readyz_names_mongodb_when_it_is_down(make_settings, redis_conn):
    settings = make_settings(mongodb_uri="mongodb://127.0.0.1:1/calsync")
    rt = Runtime(settings, redis_conn=redis_conn)
    app = create_app(runtime=rt)

    response = app.test_client().get("/readyz")
    rt.close()

    assert response.status_code == 503
    assert response.get_json()["failed"] == ["mongodb"]
