//! An embedded, in-memory STOMP broker for tests and demos (not durable).
