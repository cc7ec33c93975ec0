"""The P1 baselines, under the same gunicorn line as calsync.

``bench.bare:app`` reads the body and answers 202, nothing else. ``bench.bare:floor`` does the same after
one trivial Redis round trip (an EVALSHA that increments one key): what any Flask view pays to make
"202" mean "in Redis", before any of calsync's own work.
"""

import os

import redis
from flask import Flask, request

app = Flask("bare")


@app.post("/webhooks/graph")
def receive():
    request.get_data()
    return "", 202


floor = Flask("floor")
_script = None


@floor.post("/webhooks/graph")
def receive_after_one_round_trip():
    global _script
    if _script is None:
        _script = redis.Redis.from_url(os.environ["REDIS_URL"]).register_script("return redis.call('INCR', KEYS[1])")
    request.get_data()
    _script(keys=["bench:floor"])
    return "", 202
