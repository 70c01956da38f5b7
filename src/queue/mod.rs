//! Durable message queues on disk in the `dirq` format.
