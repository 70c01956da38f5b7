//! SSM messages as STOMP frames, for tests that play a peer on the wire themselves.
//!
//! The library maps messages to transport envelopes (`ssm::protocol`) and envelopes to frames
//! (`ssm::transport::stomp`); fake peers want both steps at once.

use ssm::protocol::{ProtocolError, SsmMessage};
use ssm::stomp::Frame;
use ssm::transport::stomp::{envelope_of, frame_of};

/// `to_frame` / `from_frame` on [`SsmMessage`].
pub trait SsmFrames: Sized {
    /// The `SEND` frame to `destination` carrying this message.
    fn to_frame(&self, destination: &str) -> Frame;
    /// Reads a message from a delivered frame (a frame that is no message reads as one
    /// without an `ssm-msg-type`).
    fn from_frame(frame: &Frame) -> Result<Self, ProtocolError>;
}

impl SsmFrames for SsmMessage {
    fn to_frame(&self, destination: &str) -> Frame {
        frame_of(self.to_envelope(destination))
    }

    fn from_frame(frame: &Frame) -> Result<SsmMessage, ProtocolError> {
        SsmMessage::from_envelope(&envelope_of(frame.clone()).unwrap_or_default())
    }
}
