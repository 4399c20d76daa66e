"""The one service layer behind both transports.

It validates input, authorizes the caller, answers reads from the cache and
turns writes into DeploymentScale updates. It speaks the API's protobuf
messages (the HTTP mirror parses JSON into the same messages), raises
``ServiceError`` for every failure a caller can act on, and knows nothing of
gRPC or HTTP.
"""
