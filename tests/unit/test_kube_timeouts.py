"""A connection that goes silent fails the call instead of hanging a worker thread."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from kubernetes import client

from certsmith.kube import ApiError, Kube


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
