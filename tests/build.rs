//! Compiles the benchmark's echo service with protox (no system `protoc`); its messages are
//! `parapet-proto`'s own.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/echo.proto");
    let mut fds = protox::compile(["echo.proto"], ["proto", "../proto"])?;
    // only the echo service is generated here; parapet.v1 comes from parapet-proto
    fds.file.retain(|f| f.name() == "echo.proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .extern_path(".parapet.v1", "::parapet_proto::v1")
        .compile_fds(fds)?;
    Ok(())
}
