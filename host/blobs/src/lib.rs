//! Content-addressed blobs for the control plane (filled in by the blobs work).
#![forbid(unsafe_code)]
