//! fanout: one multicast stream in, many copies out.
//!
//! The library behind the `fanout` binary. One module per concept:
//!
//! - [`wire`]: zero-copy typed views over Ethernet/802.1Q/IPv4/IPv6/UDP headers,
//!   the replica header builder and the RFC 1624 incremental checksum;
//! - [`config`]: the TOML configuration and its validation;
//! - [`plan`]: the resolved plan (flows, outputs, interfaces) that engines run;
//! - [`socket`]: the fallback engine on ordinary UDP sockets;
//! - [`stats`]: per-flow and per-output counters;
//! - [`lab`]: the network-namespace lab used by the demo, tests and benchmarks;
//! - [`tools`]: the numbered-datagram generator and checking sink.
#![deny(unsafe_code)]

pub mod config;
pub mod engine;
pub mod lab;
pub mod plan;
pub mod socket;
pub mod stats;
pub mod tools;
pub mod wire;
