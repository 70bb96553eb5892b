//! fanout: one multicast stream in, many copies out.
//!
//! The library behind the `fanout` binary. The folders show the
//! architecture (`docs/architecture.md` has the data flow and the decisions):
//!
//! - [`config`]: the TOML file, its validation and the engine options;
//! - [`control`]: the control socket's protocol (`fanout ctl`, `fanout top`);
//! - [`plan`]: the resolved plan (flows, outputs, interfaces) that engines run;
//! - [`engine`]: the one interface every engine offers `fanout run`
//!   (snapshot, failure, apply a change, stop);
//! - [`runtime`]: the choice of the engine for a plan (the one place that
//!   knows both);
//! - [`xdp`]: the XDP datapath in one folder: the program's loader, the
//!   AF_XDP sockets and UMEM ([`xdp::xsk`], the only `unsafe` ring code), the
//!   fan-out worker over the ring seam ([`xdp::worker`]), and its assembly;
//! - [`socket`]: the fallback engine on ordinary UDP sockets;
//! - [`membership`]: group membership through kernel sockets (IGMP/MLD),
//!   shared by both engines;
//! - [`neigh`]: next-hop MAC addresses of unicast outputs;
//! - [`wire`]: zero-copy typed views over Ethernet/802.1Q/IPv4/IPv6/UDP
//!   headers, the replica header builder and the RFC 1624 checksum update;
//! - [`health`]: stream health (RTP sequence, MPEG-TS continuity) at ingress;
//! - [`stats`]: the one counter vocabulary, from the workers to the JSON;
//! - [`lab`] (feature `lab`): the network-namespace lab and its traffic
//!   tools, for the demo, the tests and the benchmarks.
#![deny(unsafe_code)]

pub mod config;
pub mod control;
pub mod engine;
pub mod ethtool;
pub mod health;
#[cfg(feature = "lab")]
pub mod lab;
pub mod membership;
pub mod metrics;
pub mod neigh;
pub mod plan;
pub mod privileges;
pub mod rate;
pub mod runtime;
pub mod socket;
pub mod stats;
pub mod wire;
pub mod xdp;
