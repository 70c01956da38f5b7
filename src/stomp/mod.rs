//! STOMP 1.0–1.2 transport: the frame codec and an async client connection.
//!
//! This module knows nothing of SSM: it moves [`Frame`]s to and from a broker.

pub mod frame;

pub use frame::{Command, Frame, FrameError, Item, Limits, StompCodec, Version};
