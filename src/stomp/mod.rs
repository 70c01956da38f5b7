//! STOMP 1.0–1.2 transport: the frame codec and an async client connection.
