"""A connection that goes silent fails the call instead of hanging a worker thread."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from kubernetes import client

from certsmith.kube import RETRIES, ApiError, Kube


@pytest.fixture
def silent_server():
    """Accepts TCP connections and never answers, like a stream whose peer vanished."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


def test_a_silent_apiserver_fails_the_call_within_the_timeout(silent_server):
    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{silent_server}"
    kube = Kube(client.ApiClient(configuration), timeout=(1.0, 1.0))
    started = time.monotonic()
    with pytest.raises(ApiError) as failed:
        kube.get_secret(namespace="default", name="anything")
    assert failed.value.reason == "Unreachable"
    assert time.monotonic() - started < 10


@pytest.fixture
def throttling_server():
    """Answers every request as kube-apiserver's priority and fairness does when it sheds
    load (a fresh apiserver does at start): 429 with Retry-After and a Status."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    body = (
        b'{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"TooManyRequests",'
        b'"message":"Too many requests, please try again later.","code":429}'
    )
    answer = (
        b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
        b"Retry-After: 1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                connection = listener.accept()[0]
            except TimeoutError:
                continue
            with connection:
                connection.recv(65536)
                connection.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    listener.close()


def test_a_throttled_call_is_the_apiservers_429_not_no_answer(throttling_server):
    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{throttling_server}"
    configuration.retries = RETRIES  # as new_api_client sets them
    kube = Kube(client.ApiClient(configuration), timeout=(1.0, 1.0))
    with pytest.raises(ApiError) as failed:
        kube.get_secret(namespace="default", name="anything")
    assert (failed.value.status, failed.value.reason) == (429, "TooManyRequests")
