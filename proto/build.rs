//! Compiles `parapet/v1/*.proto` with protox (pure Rust, no system `protoc`) and keeps the encoded
//! descriptor set so the server can offer gRPC reflection.

use std::{env, fs, path::PathBuf};

const PROTOS: &[&str] = &["parapet/v1/parapet.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(PROTOS, ["."])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out.join("parapet_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .codec_path("crate::codec::Codec")
        .compile_fds(fds)?;
    Ok(())
}
