"""The P1 baseline: a Flask view that reads the body and answers 202, nothing else (``bench.bare:app``)."""

from flask import Flask, request

app = Flask("bare")


@app.post("/webhooks/graph")
def receive():
    request.get_data()
    return "", 202
