//! Generated protobuf and gRPC code for Parapet's API, package `parapet.v1`.
//!
//! This crate holds generated code, and the codec it uses ([`codec`]). Domain types live in `parapet-model`; the mapping between
//! the two sits in the orchestrator's `pb` module.

#![allow(
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used
)]

pub mod codec;

pub mod v1 {
    tonic::include_proto!("parapet.v1");

    /// Encoded `FileDescriptorSet` of the API, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/parapet_descriptor.bin"));
}
