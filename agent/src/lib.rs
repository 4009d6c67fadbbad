//! store-agent: the in-store half of omnichannel retail.
//!
//! The library holds everything the `store-agent` binary does, so tests and
//! benchmarks drive the same code: the local SQLite store with its transactional
//! outbox ([`store`]), the pure domain rules ([`domain`]), configuration
//! ([`config`]), the deterministic sample-data generator ([`sample`]) and the
//! command line ([`cli`]). See ARCHITECTURE.md for the map and the invariants.

pub mod cli;
pub mod cloud_sim;
pub mod config;
pub mod counter;
pub mod devices;
pub mod displays;
pub mod doctor;
pub mod domain;
pub mod events;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod pos_http;
pub mod printers;
pub mod runtime;
pub mod sample;
pub mod screens;
pub mod spool;
pub mod store;
pub mod sync;

/// The memory allocator of the `store-agent` binary, and of the benchmarks that run
/// the agent in their own process (they measure what ships). mimalloc instead of
/// glibc's malloc: a snapshot load allocates and frees tens of millions of small
/// strings on two threads, and glibc's slow paths were about a third of the
/// parser thread's time; with mimalloc `store-agent import` of the 1M-customer
/// file took 10.4 s instead of 12.3 s (docs/benchmarks.md).
pub use mimalloc::MiMalloc as Allocator;
