//! fanout: one multicast stream in, many copies out.
//!
//! The library behind the `fanout` binary. One module per concept:
//!
//! - [`xdp`]: the XDP loader (attach, flows, sockets, counters, pins);
//! - [`xsk`]: AF_XDP sockets, rings and the shared UMEM (the only `unsafe` ring code);
//! - [`wire`]: zero-copy typed views over Ethernet/802.1Q/IPv4/IPv6/UDP headers,
//!   the replica header builder and the RFC 1624 incremental checksum;
//! - [`config`]: the TOML configuration and its validation;
//! - [`plan`]: the resolved plan (flows, outputs, interfaces) that engines run;
//! - [`xdp_engine`]: the XDP datapath assembled (program, AF_XDP sockets,
//!   engine workers, next hops, counters) behind `fanout run`;
//! - [`neigh`]: next-hop MAC addresses of unicast outputs;
//! - [`socket`]: the fallback engine on ordinary UDP sockets;
//! - [`stats`]: per-flow and per-output counters;
//! - [`lab`]: the network-namespace lab used by the demo, tests and benchmarks;
//! - [`tools`]: the numbered-datagram generator and checking sink.
#![deny(unsafe_code)]

pub mod config;
pub mod engine;
pub mod lab;
pub mod neigh;
pub mod plan;
pub mod socket;
pub mod stats;
pub mod tools;
pub mod wire;
pub mod xdp;
pub mod xdp_engine;
pub mod xsk;
