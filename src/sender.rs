//! The sender (SSM client) state machine.
