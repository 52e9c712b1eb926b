//! Compiles `nodemedic/v1/*.proto` in pure Rust (protox; no system `protoc`), then generates
//! the prost messages, the tonic services and the proto3 JSON mapping (pbjson).

use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &[
    "nodemedic/v1/report.proto",
    "nodemedic/v1/agent.proto",
    "nodemedic/v1/incident.proto",
    "nodemedic/v1/action.proto",
    "nodemedic/v1/diagnostics.proto",
];

const CRI: &str = "cri/runtime/v1/api.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let fds = protox::compile(PROTOS, ["."])?;
    let descriptor_bytes = fds.encode_to_vec();
    fs::write(out_dir.join("nodemedic_descriptor.bin"), &descriptor_bytes)?;

    // Well-known types come from pbjson-types, which carries their JSON mapping.
    let mut config = tonic_prost_build::Config::new();
    config.compile_well_known_types();
    // No generated `connect` constructors: the rpc `AgentGateway.Connect` would clash with
    // them. Clients are built with `XClient::new(channel)`.
    tonic_prost_build::configure()
        .build_transport(false)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds_with_config(fds, config)?;

    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .build(&[".nodemedic"])?;

    // The CRI subset the agent's image probe calls: clients only, not in the reflection
    // descriptors (the collector does not serve it).
    println!("cargo:rerun-if-changed={CRI}");
    tonic_prost_build::configure()
        .build_transport(false)
        .build_server(false)
        .compile_fds(protox::compile([CRI], ["."])?)?;
    Ok(())
}
