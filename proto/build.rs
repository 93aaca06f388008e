//! Compiles `parapet/v1/*.proto` with protox (pure Rust, no system `protoc`), keeps the encoded
//! descriptor set (gRPC reflection, the OpenAPI document), and generates the proto3 JSON
//! mapping of every message with pbjson: the JSON API speaks exactly what `grpcurl` prints.

use std::{env, fs, path::PathBuf};

const PROTOS: &[&str] = &["parapet/v1/parapet.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(PROTOS, ["."])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let descriptors = prost::Message::encode_to_vec(&fds);
    fs::write(out.join("parapet_descriptor.bin"), &descriptors)?;
    tonic_prost_build::configure()
        .codec_path("crate::codec::Codec")
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(fds)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .build(&[".parapet"])?;
    Ok(())
}
