"""How an HTTP request body is framed must not matter, over raw TLS against the real server and control plane.

A body split over several TLS records, sent chunked, or in two writes must
be read whole before it is answered (a request once got an answer for the
first piece of its body); a body over the limit is a 413, a malformed or
missing chunk a 400 within the body deadline, a client that hangs up
mid-body no server error. The sockets are written by hand because every
HTTP client frames bodies its own way. Target: ``api_edges_support.py``.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from api_edges_support import error_lines, scale_object
from kubernetes import client
from server_harness import ServerProcess, client_ssl_context, eventually

from scalekeeper.transport.http_requests import BODY_READ_SECONDS

# -- HTTP framing must not matter (item 4) ------------------------------------------------------------


def _exchange(server: ServerProcess, writes: list[bytes], timeout: float = 10) -> tuple[int, Any]:
    """Send a request in separate writes (so separate TLS records); return the answer's status and JSON body.

    Between writes the server gets a moment to answer early: an answer before
    the body is complete is the bug this guards against, so it ends the
    sending at once instead of racing the next write.
    """
    context = client_ssl_context(server.pki.ca_file, server.pki.clients["writer"])
    with (
        socket.create_connection(("localhost", server.http_port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        answer = b""
        for index, data in enumerate(writes):
            if index:
                answer = _receive(tls, timeout=0.2, then=timeout)
                if answer:
                    break  # answered before the body was complete
            try:
                tls.sendall(data)
            except OSError:
                break  # refused mid-body (over the limit): the answer is waiting
        return _parse_answer(answer, tls)


def _receive(tls: socket.socket, timeout: float, then: float) -> bytes:
    """Application data that arrives within ``timeout`` (TLS session tickets are not; select() would count them)."""
    tls.settimeout(timeout)
    try:
        return tls.recv(65536)
    except TimeoutError:
        return b""
    finally:
        tls.settimeout(then)


def _parse_answer(received: bytes, tls: socket.socket) -> tuple[int, Any]:
    while b"\r\n\r\n" not in received:
        received += tls.recv(65536) or pytest.fail(f"connection closed mid-answer: {received!r}")
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    while len(body) < int(headers["content-length"]):
        body += tls.recv(65536) or pytest.fail(f"connection closed mid-answer: {received!r}")
    return int(status_line.split()[1]), json.loads(body)


def _head(path: str, framing: str) -> bytes:
    return (f"PUT {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{framing}\r\n\r\n").encode()


def _chunks(*parts: bytes) -> list[bytes]:
    return [b"%x\r\n%s\r\n" % (len(part), part) for part in parts] + [b"0\r\n\r\n"]


def _body_in_pieces(replicas: int) -> Iterator[bytes]:
    body = b'{"replicas": %d}' % replicas
    yield from (body[:3], body[3:9], body[9:])


def test_a_body_in_several_tls_records_with_content_length(
    scalekeeper_server: ServerProcess, admin_api: client.ApiClient, namespace: str, managed: str
) -> None:
    pieces = list(_body_in_pieces(3))
    status, body = _exchange(scalekeeper_server, [_head(managed, f"Content-Length: {len(b''.join(pieces))}"), *pieces])
    assert (status, body.get("desiredReplicas")) == (200, 3), body
    assert scale_object(admin_api, namespace)["spec"]["replicas"] == 3


def test_a_chunked_body(scalekeeper_server: ServerProcess, admin_api: client.ApiClient, namespace: str, managed: str):
    pieces = _chunks(*_body_in_pieces(4))
    status, body = _exchange(scalekeeper_server, [_head(managed, "Transfer-Encoding: chunked"), *pieces])
    assert (status, body.get("desiredReplicas")) == (200, 4), body
    assert scale_object(admin_api, namespace)["spec"]["replicas"] == 4


def test_content_length_sent_in_two_writes(scalekeeper_server: ServerProcess, managed: str) -> None:
    body = b'{"replicas": 5}'
    head = _head(managed, f"Content-Length: {len(body)}")
    status, answer = _exchange(scalekeeper_server, [head + body[:7], body[7:]])
    assert (status, answer.get("desiredReplicas")) == (200, 5), answer


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_body_over_the_limit_is_413(scalekeeper_server: ServerProcess, managed: str, framing: str) -> None:
    padding = b" " * 40_000
    parts = [b'{"replicas": 1', padding, padding, b"}"]
    if framing == "chunked":
        head, pieces = _head(managed, "Transfer-Encoding: chunked"), _chunks(*parts)
    else:
        head, pieces = _head(managed, f"Content-Length: {sum(map(len, parts))}"), parts
    status, body = _exchange(scalekeeper_server, [head, *pieces])
    assert (status, body["code"]) == (413, "RESOURCE_EXHAUSTED"), body


def test_a_malformed_chunk_after_the_headers_is_400_in_bounded_time(
    scalekeeper_server: ServerProcess, managed: str
) -> None:
    # aiohttp itself refuses a malformed chunk that comes with the headers; one that comes later never fails
    # the read, so only the body deadline ends the call.
    writes = [_head(managed, "Transfer-Encoding: chunked"), b"zz\r\n{}\r\n"]
    status, body = _exchange(scalekeeper_server, writes, timeout=BODY_READ_SECONDS + 10)
    assert (status, body["code"]) == (400, "INVALID_ARGUMENT"), body
    assert "did not arrive" in body["message"]


def test_a_client_that_hangs_up_mid_body_is_no_server_error(scalekeeper_server: ServerProcess, managed: str) -> None:
    context = client_ssl_context(scalekeeper_server.pki.ca_file, scalekeeper_server.pki.clients["writer"])
    calls = len([r for r in scalekeeper_server.log_records() if r.get("msg") == "call"])
    with (
        socket.create_connection(("localhost", scalekeeper_server.http_port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(_head(managed, "Content-Length: 1000") + b'{"replicas": 1')

    def accounted() -> list[dict[str, Any]]:
        return [r for r in scalekeeper_server.log_records() if r.get("msg") == "call"][calls:]

    [call] = eventually(accounted, "the call in the access log")
    assert (call["method"], call["code"]) == ("SetReplicas", "CANCELLED")
    assert not error_lines(scalekeeper_server)
