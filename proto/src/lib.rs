//! The nodemedic wire contract (`nodemedic.v1`): the messages an agent reports, the
//! `AgentGateway` stream between agents and the collector, and the `Diagnostics` query
//! service for tooling.
//!
//! Generated at build time from `proto/nodemedic/v1/*.proto` by protox (pure Rust, no
//! `protoc`), tonic and pbjson. Every message serialises to the canonical proto3 JSON
//! mapping (lowerCamelCase field names, enums as their names, 64-bit integers as strings),
//! which is what `-o json` and bundles print: field names are as stable as the protos.
//!
//! Besides the generated code this crate holds only small helpers the programs share:
//! [`checks`] (every check id, defined once), [`finding`] (building findings and evidence),
//! [`limits`] (what a report's strings may hold, and fitting a report to it), [`time`]
//! (timestamps), [`values`] (every value of a message within bounds: enums, times,
//! numbers, strings), [`tls`] (a client's TLS files) and [`logging`] (start-up of
//! `tracing`).

pub mod checks;
pub mod finding;
pub mod limits;
pub mod logging;
pub mod quantity;
pub mod time;
pub mod tls;
pub mod values;

/// `nodemedic.v1`: messages and services.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    tonic::include_proto!("nodemedic.v1");
    include!(concat!(env!("OUT_DIR"), "/nodemedic.v1.serde.rs"));
}

/// `runtime.v1`: the part of the Kubernetes CRI the agent's image probe calls (clients only).
#[allow(missing_docs, clippy::all)]
pub mod cri {
    tonic::include_proto!("runtime.v1");
}

/// The encoded `FileDescriptorSet` of the protos, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/nodemedic_descriptor.bin"));

pub use pbjson_types::{Duration, Timestamp};
