use ttrpc_codegen::{Codegen, Customize, ProtobufCustomize};

fn main() {
    let protos = ["proto/agent.proto", "proto/shim.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    Codegen::new()
        .out_dir(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .inputs(protos)
        .include("proto")
        .rust_protobuf()
        .rust_protobuf_customize(ProtobufCustomize::default().gen_mod_rs(false))
        .customize(Customize {
            async_all: true,
            ..Default::default()
        })
        .run()
        .expect("generating ttrpc code from proto/ failed");

    // The generated files carry inner attributes (`#![allow(..)]`), which `include!` rejects;
    // the including modules in lib.rs carry the equivalent outer attributes instead.
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for entry in std::fs::read_dir(&out_dir).expect("OUT_DIR is readable") {
        let path = entry.expect("OUT_DIR entry").path();
        if path.extension().is_some_and(|ext| ext == "rs") {
            let text = std::fs::read_to_string(&path).expect("generated file is UTF-8");
            let kept: String = text
                .lines()
                .filter(|line| !line.starts_with("#![") && !line.starts_with("//!"))
                .map(|line| format!("{line}\n"))
                .collect();
            std::fs::write(&path, kept).expect("rewriting generated file");
        }
    }
}
