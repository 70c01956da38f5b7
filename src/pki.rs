//! Throwaway certificate authorities and certificates for tests and `ssm demo`.
