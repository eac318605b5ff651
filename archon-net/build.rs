//! Compiles the `archon.v1` protos with protox (pure Rust, no system `protoc`) and
//! generates the prost messages and the tonic clients and servers.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const PROTOS: [&str; 2] = ["proto/archon/v1/api.proto", "proto/archon/v1/worker.proto"];
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    println!("cargo:rerun-if-changed=build.rs");
    let fds = protox::compile(PROTOS, ["proto"])?;
    // The services' descriptors, for tests that enumerate every method.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("archon_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .bytes(".")
        .btree_map(".")
        .emit_rerun_if_changed(false)
        .compile_fds(fds)?;
    Ok(())
}
