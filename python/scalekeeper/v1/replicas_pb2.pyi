from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetReplicasRequest(_message.Message):
    __slots__ = ("namespace", "name")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class SetReplicasRequest(_message.Message):
    __slots__ = ("namespace", "name", "replicas", "expected_desired_version", "take_ownership")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_DESIRED_VERSION_FIELD_NUMBER: _ClassVar[int]
    TAKE_OWNERSHIP_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    replicas: int
    expected_desired_version: str
    take_ownership: bool
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., replicas: _Optional[int] = ..., expected_desired_version: _Optional[str] = ..., take_ownership: _Optional[bool] = ...) -> None: ...

class ListDeploymentsRequest(_message.Message):
    __slots__ = ("namespace", "page_size", "page_token")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    page_size: int
    page_token: str
    def __init__(self, namespace: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListDeploymentsResponse(_message.Message):
    __slots__ = ("deployments", "next_page_token")
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    deployments: _containers.RepeatedCompositeFieldContainer[Replicas]
    next_page_token: str
    def __init__(self, deployments: _Optional[_Iterable[_Union[Replicas, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchReplicasRequest(_message.Message):
    __slots__ = ("namespace",)
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    def __init__(self, namespace: _Optional[str] = ...) -> None: ...

class ReplicasEvent(_message.Message):
    __slots__ = ("type", "replicas")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TYPE_UNSPECIFIED: _ClassVar[ReplicasEvent.Type]
        ADDED: _ClassVar[ReplicasEvent.Type]
        MODIFIED: _ClassVar[ReplicasEvent.Type]
        DELETED: _ClassVar[ReplicasEvent.Type]
    TYPE_UNSPECIFIED: ReplicasEvent.Type
    ADDED: ReplicasEvent.Type
    MODIFIED: ReplicasEvent.Type
    DELETED: ReplicasEvent.Type
    TYPE_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    type: ReplicasEvent.Type
    replicas: Replicas
    def __init__(self, type: _Optional[_Union[ReplicasEvent.Type, str]] = ..., replicas: _Optional[_Union[Replicas, _Mapping]] = ...) -> None: ...

class Replicas(_message.Message):
    __slots__ = ("namespace", "name", "desired_replicas", "spec_replicas", "ready_replicas", "available_replicas", "managed", "desired_version", "deployment_resource_version", "condition")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESIRED_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    SPEC_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    READY_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    MANAGED_FIELD_NUMBER: _ClassVar[int]
    DESIRED_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_RESOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    desired_replicas: int
    spec_replicas: int
    ready_replicas: int
    available_replicas: int
    managed: bool
    desired_version: str
    deployment_resource_version: str
    condition: Condition
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., desired_replicas: _Optional[int] = ..., spec_replicas: _Optional[int] = ..., ready_replicas: _Optional[int] = ..., available_replicas: _Optional[int] = ..., managed: _Optional[bool] = ..., desired_version: _Optional[str] = ..., deployment_resource_version: _Optional[str] = ..., condition: _Optional[_Union[Condition, _Mapping]] = ...) -> None: ...

class Condition(_message.Message):
    __slots__ = ("status", "reason", "message")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    status: str
    reason: str
    message: str
    def __init__(self, status: _Optional[str] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...
