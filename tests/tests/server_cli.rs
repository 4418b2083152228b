//! The `airlock` command line against a running server (`airlock server`, client commands).
