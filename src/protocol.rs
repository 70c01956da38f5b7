//! SSM message types and headers, and their mapping to STOMP frames (no I/O).
