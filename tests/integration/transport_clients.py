"""The four RPCs as (code, JSON body) whatever the transport, so that one test body covers gRPC and HTTP/JSON.

Fixtures over them (``transport``, ``api_for``, ``writer``, ``reader``) are in ``conftest.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format
from server_harness import ServerProcess, eventually

from scalekeeper.v1 import replicas_pb2 as pb

HTTP_STATUS = {
    "OK": 200,
    "INVALID_ARGUMENT": 400,
    "NOT_FOUND": 404,
    "PERMISSION_DENIED": 403,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "UNAVAILABLE": 503,
}


@dataclass
class Outcome:
    code: str
    body: dict[str, Any]
    message: str = ""


class Api:
    """The four RPCs, as (code, JSON) whatever the transport."""

    transport: str

    def get(self, namespace: str, name: str) -> Outcome:
        raise NotImplementedError

    def set(
        self, namespace: str, name: str, replicas: Any, expected: str | None = None, *, take_ownership: bool = False
    ) -> Outcome:
        raise NotImplementedError

    def list(self, namespace: str = "", page_size: Any = 0, page_token: str = "") -> Outcome:
        raise NotImplementedError

    def watch(self, namespace: str) -> Iterator[dict[str, Any]]:
        raise NotImplementedError


def _message_json(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


class GrpcApi(Api):
    transport = "grpc"

    def __init__(self, server: ServerProcess, role: str) -> None:
        self.stub = server.stub(role)

    def _call(self, method: Callable[..., Any], request: Any) -> Outcome:
        try:
            return Outcome("OK", _message_json(method(request, timeout=15)))
        except grpc.RpcError as error:
            return Outcome(error.code().name, {}, error.details() or "")

    def get(self, namespace: str, name: str) -> Outcome:
        return self._call(self.stub.GetReplicas, pb.GetReplicasRequest(namespace=namespace, name=name))

    def set(
        self, namespace: str, name: str, replicas: Any, expected: str | None = None, *, take_ownership: bool = False
    ) -> Outcome:
        try:
            request = pb.SetReplicasRequest(namespace=namespace, name=name, replicas=replicas)
        except ValueError as error:
            # Out of int32: a gRPC client cannot even encode it.
            return Outcome("INVALID_ARGUMENT", {}, str(error))
        if expected is not None:
            request.expected_desired_version = expected
        request.take_ownership = take_ownership
        return self._call(self.stub.SetReplicas, request)

    def list(self, namespace: str = "", page_size: Any = 0, page_token: str = "") -> Outcome:
        request = pb.ListDeploymentsRequest(namespace=namespace, page_size=page_size, page_token=page_token)
        return self._call(self.stub.ListDeployments, request)

    def watch(self, namespace: str) -> Iterator[dict[str, Any]]:
        call = self.stub.WatchReplicas(pb.WatchReplicasRequest(namespace=namespace), timeout=60)
        try:
            for event in call:
                yield _message_json(event)
        finally:
            call.cancel()


class HttpApi(Api):
    transport = "http"

    def __init__(self, server: ServerProcess, role: str) -> None:
        self.http = server.http(role)

    @staticmethod
    def _outcome(result: Any) -> Outcome:
        if result.status == 200:
            return Outcome("OK", result.body)
        assert isinstance(result.body, dict), result.body
        assert set(result.body) == {"code", "message"}, result.body
        assert HTTP_STATUS[result.body["code"]] == result.status, (result.status, result.body)
        return Outcome(result.body["code"], {}, result.body["message"])

    def get(self, namespace: str, name: str) -> Outcome:
        return self._outcome(self.http.get(f"/v1/namespaces/{namespace}/deployments/{name}/replicas"))

    def set(
        self, namespace: str, name: str, replicas: Any, expected: str | None = None, *, take_ownership: bool = False
    ) -> Outcome:
        body: dict[str, Any] = {"replicas": replicas}
        if expected is not None:
            body["expectedDesiredVersion"] = expected
        if take_ownership:
            body["takeOwnership"] = True
        return self._outcome(self.http.put(f"/v1/namespaces/{namespace}/deployments/{name}/replicas", body))

    def list(self, namespace: str = "", page_size: Any = 0, page_token: str = "") -> Outcome:
        from urllib.parse import urlencode

        query = urlencode({"namespace": namespace, "page_size": page_size, "page_token": page_token})
        return self._outcome(self.http.get(f"/v1/deployments?{query}"))

    def watch(self, namespace: str) -> Iterator[dict[str, Any]]:
        connection = self.http.connection(timeout=60)
        try:
            connection.request("GET", f"/v1/watch/deployments?namespace={namespace}")
            response = connection.getresponse()
            assert response.status == 200, response.read()
            assert response.getheader("Content-Type", "").startswith("application/x-ndjson")
            while line := response.readline():
                yield json.loads(line)
        finally:
            connection.close()


TRANSPORTS = {"grpc": GrpcApi, "http": HttpApi}


def wait_visible(api: Api, namespace: str, name: str) -> Outcome:
    return eventually(lambda: (o := api.get(namespace, name)).code == "OK" and o, f"{namespace}/{name} in the cache")
