//! End-to-end tests of store-agent: the harness that drives the real binary.
