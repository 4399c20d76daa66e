"""The ways in: gRPC and HTTP/JSON over mTLS, and the plaintext health port."""
