//! The OCI image types a box needs come from the `oci-spec` crate (indexes, manifests,
//! descriptors, image configurations; Docker's v2 schema 2 has the same shape, its media
//! types arrive as `MediaType::Other`). Parsing through them also validates digests, so a
//! registry or layout that names a malformed digest is refused when its JSON is read. This
//! module adds the media-type names the registry client asks for and the few questions the
//! runtime asks of a descriptor.

use oci_spec::image::{Arch, Os};
pub use oci_spec::image::{
    Config as RunConfig, Descriptor, DescriptorBuilder, Digest, ImageConfiguration as ImageConfig,
    ImageIndex as Index, ImageManifest as Manifest, MediaType,
};

pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Annotation naming a manifest inside an OCI image layout (its tag).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Whether `descriptor` names an index (OCI) or a manifest list (Docker).
pub fn is_index(descriptor: &Descriptor) -> bool {
    match descriptor.media_type() {
        MediaType::ImageIndex => true,
        MediaType::Other(other) => other == MEDIA_DOCKER_LIST,
        _ => false,
    }
}

/// Whether this entry of an index is the linux/amd64 image boxes run.
pub fn is_linux_amd64(descriptor: &Descriptor) -> bool {
    descriptor
        .platform()
        .as_ref()
        .is_some_and(|p| *p.os() == Os::Linux && *p.architecture() == Arch::Amd64)
}

/// The tag an OCI image layout gives this entry of its index.
pub fn ref_name(descriptor: &Descriptor) -> Option<&str> {
    descriptor
        .annotations()
        .as_ref()?
        .get(REF_NAME)
        .map(String::as_str)
}

/// The descriptor's digest as text (`sha256:…`), as the blob store names blobs.
pub fn digest(descriptor: &Descriptor) -> String {
    descriptor.digest().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_and_oci_media_types_and_platforms_are_told_apart() {
        let json = |media: &str, platform: &str| {
            format!(
                r#"{{"mediaType":"{media}","digest":"sha256:{}","size":1{platform}}}"#,
                "a".repeat(64)
            )
        };
        let parse = |text: String| serde_json::from_str::<Descriptor>(&text).unwrap();
        assert!(is_index(&parse(json(MEDIA_OCI_INDEX, ""))));
        assert!(is_index(&parse(json(MEDIA_DOCKER_LIST, ""))));
        assert!(!is_index(&parse(json(MEDIA_DOCKER_MANIFEST, ""))));
        let amd64 = parse(json(
            MEDIA_OCI_MANIFEST,
            r#","platform":{"architecture":"amd64","os":"linux"}"#,
        ));
        assert!(is_linux_amd64(&amd64));
        assert_eq!(digest(&amd64), format!("sha256:{}", "a".repeat(64)));
        let arm = parse(json(
            MEDIA_OCI_MANIFEST,
            r#","platform":{"architecture":"arm64","os":"linux"}"#,
        ));
        assert!(!is_linux_amd64(&arm));
        // A malformed digest is refused when the JSON is read.
        let bad = r#"{"mediaType":"x","digest":"sha256:../../etc","size":1}"#;
        assert!(serde_json::from_str::<Descriptor>(bad).is_err());
    }
}
