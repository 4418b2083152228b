//! The control plane over HTTP, in process: the deployment loop, access control, bad input.
