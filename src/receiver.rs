//! The receiver (SSM server) state machine.
