//! airlock's control plane over HTTP.
#![forbid(unsafe_code)]
