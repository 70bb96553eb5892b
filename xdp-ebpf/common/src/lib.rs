//! Map key and value types shared by the XDP program (`xdp-ebpf`) and the
//! userspace loader. Everything here is `#[repr(C)]`, `Copy`, `no_std` and
//! free of padding surprises, so that both sides agree on the bytes in a map.
#![no_std]
