//! SIGKILL at random moments during uploads, gate runs and promotions.
