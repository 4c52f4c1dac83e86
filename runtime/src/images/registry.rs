//! Pulling images from OCI distribution registries (Docker Hub, GHCR, a private registry)
//! into the blob store, through `oci-client`.
//!
//! - Unqualified names ("busybox", "library/alpine") are tried against the configured
//!   registries in order; with none configured, against docker.io.
//! - Plain HTTP is allowed for `localhost` and addresses that parse as loopback, and for
//!   registries the caller marks insecure; credentials are never sent to the latter.
//! - Credentials come from the Docker config (`$DOCKER_CONFIG/config.json` or
//!   `~/.docker/config.json`): its credential helpers (`credHelpers`, `credsStore`), else
//!   `auths.<registry>.auth`; bearer tokens are negotiated by the client from them.
//! - Connecting and every read have deadlines.
//! - Every blob is verified by sha256 before it becomes visible; one download per blob even
//!   when several processes pull at once (a per-blob lock, then a second look).

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest, Sha256};

use super::blobs::sha256_hex;
use super::spec::{
    digest as digest_of, is_index, Descriptor, DescriptorBuilder, Index, Manifest, MediaType,
    MEDIA_DOCKER_LIST, MEDIA_DOCKER_MANIFEST, MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST,
};
use super::{ImageError, ImageStore, StoredImage};

/// How long a pull waits for another process downloading the same blob.
const BLOB_LOCK_TIMEOUT: Duration = Duration::from_secs(3600);
const MANIFEST_TYPES: [&str; 4] = [
    MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST,
    MEDIA_DOCKER_LIST,
    MEDIA_DOCKER_MANIFEST,
];

/// One step of a download, for progress displays.
#[derive(Debug, Clone)]
pub struct PullProgress {
    pub digest: String,
    /// Bytes of this blob received so far.
    pub received: u64,
    /// The blob's size from its descriptor.
    pub total: u64,
}

/// A progress callback. Libraries stay silent by leaving it out; the CLI draws bars with it.
#[derive(Clone)]
pub struct ProgressFn(pub std::sync::Arc<dyn Fn(&PullProgress) + Send + Sync>);

impl std::fmt::Debug for ProgressFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressFn")
    }
}

/// Where and how to pull from.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// Registries tried in order for unqualified names; empty means docker.io.
    pub registries: Vec<String>,
    /// Registries (`host[:port]`) reached over plain HTTP although they are not loopback.
    pub insecure_registries: Vec<String>,
    /// Docker config file with credentials; `None` reads the usual place.
    pub docker_config: Option<PathBuf>,
    /// Called as blob bytes arrive.
    pub progress: Option<ProgressFn>,
    /// Sizes beyond which what a registry sends is refused.
    pub limits: PullLimits,
}

/// The most a registry may make a pull hold or store. Registries are untrusted: a manifest
/// or blob over its limit ends the pull with [`ImageError::TooLarge`], naming the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullLimits {
    /// A manifest or index (held in memory to be parsed). Default 4 MiB, as Docker's registry.
    pub max_manifest_bytes: u64,
    /// One blob (a layer or a config), as declared and as received. Default 16 GiB.
    pub max_blob_bytes: u64,
}

impl Default for PullLimits {
    fn default() -> Self {
        Self {
            max_manifest_bytes: 4 << 20,
            max_blob_bytes: 16 << 30,
        }
    }
}

impl PullLimits {
    fn check(
        &self,
        reference: &Reference,
        what: impl FnOnce() -> String,
        size: u64,
        manifest: bool,
    ) -> Result<(), ImageError> {
        let (limit, field) = if manifest {
            (self.max_manifest_bytes, "max_manifest_bytes")
        } else {
            (self.max_blob_bytes, "max_blob_bytes")
        };
        if size > limit {
            return Err(ImageError::TooLarge {
                reference: reference.whole(),
                what: what(),
                size,
                limit,
                field,
            });
        }
        Ok(())
    }
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct PullOutcome {
    pub image: StoredImage,
    /// The fully qualified reference that answered.
    pub resolved: String,
    pub blobs_downloaded: usize,
    pub bytes_downloaded: u64,
}

fn looks_like_host(component: &str) -> bool {
    component.contains('.') || component.contains(':') || component == "localhost"
}

/// The references to try for `name`, in order.
pub fn candidates(name: &str, registries: &[String]) -> Vec<String> {
    let first = name.split('/').next().unwrap_or_default();
    if name.contains('/') && looks_like_host(first) {
        return vec![name.to_string()];
    }
    if registries.is_empty() {
        return vec![name.to_string()];
    }
    registries
        .iter()
        .map(|r| format!("{}/{name}", r.trim_end_matches('/')))
        .collect()
}

/// Whether `registry` (host[:port]) is this machine: `localhost`, or an address that parses
/// as loopback. A name that merely starts with "127." is not.
fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => match registry.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => registry,
        },
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// How long a Docker credential helper may take to answer.
const CREDENTIAL_HELPER_TIMEOUT: Duration = Duration::from_secs(30);
/// The most a credential helper's answer may hold.
const CREDENTIAL_HELPER_OUTPUT_LIMIT: u64 = 64 * 1024;
/// How long a registry may take to accept a connection, and to send the next bytes.
const REGISTRY_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const REGISTRY_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Credentials for `registry` from a Docker config file: its credential helper
/// (`credHelpers.<registry>`, else `credsStore`), else `auths.<registry>.auth`.
pub fn docker_auth(config: &Path, registry: &str) -> RegistryAuth {
    docker_auth_searching(config, registry, std::env::var_os("PATH").as_deref())
}

/// [`docker_auth`], finding credential helpers in the directories of `search_path`.
fn docker_auth_searching(
    config: &Path,
    registry: &str,
    search_path: Option<&std::ffi::OsStr>,
) -> RegistryAuth {
    let Ok(text) = std::fs::read_to_string(config) else {
        return RegistryAuth::Anonymous;
    };
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
        return RegistryAuth::Anonymous;
    };
    let docker_hub = registry == "docker.io" || registry == "index.docker.io";
    let keys: Vec<String> = if docker_hub {
        vec![
            "https://index.docker.io/v1/".into(),
            "index.docker.io".into(),
            "docker.io".into(),
        ]
    } else {
        vec![
            registry.to_string(),
            format!("https://{registry}"),
            format!("http://{registry}"),
        ]
    };
    let pointer = |root: &str, key: &str| {
        json.pointer(&format!(
            "/{root}/{}",
            key.replace('~', "~0").replace('/', "~1")
        ))
    };
    let helper = keys
        .iter()
        .find_map(|key| pointer("credHelpers", key))
        .or_else(|| json.get("credsStore"))
        .and_then(|h| h.as_str());
    if let Some(helper) = helper {
        // The server name Docker stores under: its v1 URL for Docker Hub, the host elsewhere.
        let server = if docker_hub { &keys[0] } else { registry };
        match credential_helper(helper, server, search_path) {
            Ok(Some(auth)) => return auth,
            Ok(None) => {}
            Err(message) => tracing::warn!("docker-credential-{helper}: {message}; trying auths"),
        }
    }
    for key in &keys {
        let Some(encoded) = pointer("auths", key).and_then(|a| a.get("auth")) else {
            continue;
        };
        let Some(decoded) = encoded
            .as_str()
            .and_then(|e| base64::engine::general_purpose::STANDARD.decode(e).ok())
            .and_then(|d| String::from_utf8(d).ok())
        else {
            continue;
        };
        if let Some((user, pass)) = decoded.split_once(':') {
            return RegistryAuth::Basic(user.to_string(), pass.to_string());
        }
    }
    RegistryAuth::Anonymous
}

/// Asks `docker-credential-NAME get` for `server`'s credentials, as Docker does: the server on
/// stdin, `{"Username", "Secret"}` on stdout. `Ok(None)` when it has none; bounded in time and
/// in what it may print.
fn credential_helper(
    name: &str,
    server: &str,
    search_path: Option<&std::ffi::OsStr>,
) -> Result<Option<RegistryAuth>, String> {
    use std::io::{Read, Write};
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(format!("{name:?} is not a credential helper name"));
    }
    let program = format!("docker-credential-{name}");
    let path = search_path
        .map(std::env::split_paths)
        .into_iter()
        .flatten()
        .map(|dir| dir.join(&program))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| "not found in PATH".to_string())?;
    let mut child = std::process::Command::new(&path)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", path.display()))?;
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    // Read on a thread, so that a helper that never writes nor exits meets the deadline.
    let server = server.to_string();
    let reader = std::thread::spawn(move || {
        let _ = stdin.write_all(server.as_bytes());
        drop(stdin);
        let mut answer = Vec::new();
        let _ = (&mut stdout)
            .take(CREDENTIAL_HELPER_OUTPUT_LIMIT + 1)
            .read_to_end(&mut answer);
        answer
    });
    let deadline = std::time::Instant::now() + CREDENTIAL_HELPER_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "gave no answer within {CREDENTIAL_HELPER_TIMEOUT:?}"
                ));
            }
        }
    };
    let answer = reader.join().unwrap_or_default();
    if answer.len() as u64 > CREDENTIAL_HELPER_OUTPUT_LIMIT {
        return Err(format!(
            "answered more than {CREDENTIAL_HELPER_OUTPUT_LIMIT} bytes"
        ));
    }
    if !status.success() {
        // "credentials not found in native keychain", in Docker's protocol.
        return Ok(None);
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Answer {
        username: String,
        secret: String,
    }
    let answer: Answer =
        serde_json::from_slice(&answer).map_err(|e| format!("unreadable answer: {e}"))?;
    Ok(match answer.username.as_str() {
        // An identity token is a refresh token for an OAuth exchange this client does not do.
        "<token>" => None,
        _ => Some(RegistryAuth::Basic(answer.username, answer.secret)),
    })
}

fn default_docker_config() -> PathBuf {
    std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".docker")
        })
        .join("config.json")
}

fn is_not_found(err: &OciDistributionError) -> bool {
    match err {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                format!("{:?}", e.code).as_str(),
                "ManifestUnknown" | "NameUnknown" | "BlobUnknown"
            )
        }),
        OciDistributionError::ServerError { code, .. } => *code == 404,
        _ => false,
    }
}

fn is_unreachable(err: &OciDistributionError) -> bool {
    matches!(err, OciDistributionError::RequestError(e) if e.is_connect() || e.is_timeout())
}

/// Flattens an error and its sources into one line.
fn describe(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

impl ImageStore {
    /// Pulls `name` and records it under that name. Blobs already in the store are not
    /// downloaded again.
    pub async fn pull(&self, name: &str, options: &PullOptions) -> Result<PullOutcome, ImageError> {
        let tried = candidates(name, &options.registries);
        let mut failures = Vec::new();
        for candidate in &tried {
            let reference: Reference = candidate.parse().map_err(|e: oci_client::ParseError| {
                ImageError::BadReference {
                    reference: candidate.clone(),
                    reason: e.to_string(),
                }
            })?;
            match self.pull_one(name, &reference, options).await {
                Ok(outcome) => return Ok(outcome),
                // Not there: the next registry may have it.
                Err(PullFailure::NotFound(message)) => {
                    failures.push(format!("{}: {message}", reference.whole()))
                }
                Err(PullFailure::Fatal(err)) => return Err(err),
            }
        }
        Err(ImageError::NotFound {
            reference: name.to_string(),
            tried: failures.join("; "),
        })
    }

    async fn pull_one(
        &self,
        name: &str,
        reference: &Reference,
        options: &PullOptions,
    ) -> Result<PullOutcome, PullFailure> {
        let registry = reference.resolve_registry().to_string();
        let loopback = is_loopback(&registry);
        let mut plain_http: Vec<String> = options.insecure_registries.clone();
        if loopback {
            plain_http.push(registry.clone());
        }
        let in_clear = !loopback && plain_http.contains(&registry);
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(plain_http),
            connect_timeout: Some(REGISTRY_CONNECT_TIMEOUT),
            read_timeout: Some(REGISTRY_READ_TIMEOUT),
            ..Default::default()
        });
        let config_path = options
            .docker_config
            .clone()
            .unwrap_or_else(default_docker_config);
        let auth = if in_clear {
            // Plain HTTP to another machine: anyone on the path could read credentials.
            tracing::warn!("{registry} is reached over plain HTTP; pulling anonymously");
            RegistryAuth::Anonymous
        } else {
            docker_auth(&config_path, reference.registry())
        };
        // A registry that lacks the image, or cannot be reached, lets the next one try; one
        // that answers with something broken ends the pull.
        let fatal = |err: OciDistributionError| {
            if is_not_found(&err) || is_unreachable(&err) {
                PullFailure::NotFound(describe(&err))
            } else {
                PullFailure::Fatal(ImageError::Registry {
                    reference: reference.whole(),
                    message: describe(&err),
                })
            }
        };

        let limits = options.limits;
        let too_large = |what: &str, size: u64| {
            limits
                .check(reference, || what.to_string(), size, true)
                .map_err(PullFailure::Fatal)
        };
        let mut downloads = Downloads::default();
        // oci-client reads a manifest whole; what it read is refused before it is parsed.
        let (bytes, digest) = client
            .pull_manifest_raw(reference, &auth, &MANIFEST_TYPES)
            .await
            .map_err(fatal)?;
        too_large("the manifest", bytes.len() as u64)?;
        let top = self
            .put_manifest(reference, &bytes, &digest)
            .map_err(PullFailure::Fatal)?;
        let mut manifest_descriptor = top.clone();
        if is_index(&top) {
            let index: Index = parse(reference, "image index", &bytes)?;
            let chosen = super::select_linux_amd64(&index, &reference.whole())
                .map_err(PullFailure::Fatal)?;
            too_large("the linux/amd64 manifest (declared)", chosen.size())?;
            let by_digest = reference.clone_with_digest(digest_of(&chosen));
            let (bytes, digest) = client
                .pull_manifest_raw(&by_digest, &auth, &MANIFEST_TYPES)
                .await
                .map_err(fatal)?;
            too_large("the linux/amd64 manifest", bytes.len() as u64)?;
            self.put_manifest(reference, &bytes, &digest)
                .map_err(PullFailure::Fatal)?;
            manifest_descriptor = chosen;
        }
        let manifest: Manifest = parse(
            reference,
            "manifest",
            &self
                .blobs
                .read(&digest_of(&manifest_descriptor))
                .map_err(|e| PullFailure::Fatal(e.into()))?,
        )?;
        for blob in std::iter::once(manifest.config()).chain(manifest.layers()) {
            limits
                .check(
                    reference,
                    || format!("blob {} (declared)", blob.digest()),
                    blob.size(),
                    false,
                )
                .map_err(PullFailure::Fatal)?;
            self.download_blob(
                &client,
                reference,
                blob,
                options.progress.as_ref(),
                &mut downloads,
            )
            .await
            .map_err(|e| match e {
                DownloadError::Registry(err) => fatal(err),
                DownloadError::Store(err) => PullFailure::Fatal(err),
            })?;
        }
        let image = self
            .store_image(name, top, &|d: &Descriptor| {
                if self.blobs.contains(&digest_of(d)) {
                    Ok(())
                } else {
                    Err(ImageError::Registry {
                        reference: reference.whole(),
                        message: format!("blob {} was not downloaded", d.digest()),
                    })
                }
            })
            .map_err(PullFailure::Fatal)?;
        self.record(&image).map_err(PullFailure::Fatal)?;
        Ok(PullOutcome {
            image,
            resolved: reference.whole(),
            blobs_downloaded: downloads.blobs,
            bytes_downloaded: downloads.bytes,
        })
    }

    /// Stores a manifest or index fetched by tag or digest, after checking its digest.
    fn put_manifest(
        &self,
        reference: &Reference,
        bytes: &[u8],
        digest: &str,
    ) -> Result<Descriptor, ImageError> {
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
        if actual != digest && !digest.is_empty() {
            return Err(super::blobs::BlobError::Mismatch {
                expected: digest.to_string(),
                actual,
            }
            .into());
        }
        let json: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|source| ImageError::Json {
                image: reference.whole(),
                what: "manifest",
                source,
            })?;
        let media_type = match json.get("mediaType").and_then(|m| m.as_str()) {
            Some(m) => m.to_string(),
            None if json.get("manifests").is_some() => MEDIA_OCI_INDEX.to_string(),
            None => MEDIA_OCI_MANIFEST.to_string(),
        };
        let parsed_digest: super::spec::Digest =
            actual.parse().map_err(|e| ImageError::Registry {
                reference: reference.whole(),
                message: format!("digest {actual}: {e}"),
            })?;
        self.blobs.put(&actual, Some(bytes.len() as u64), bytes)?;
        DescriptorBuilder::default()
            .media_type(MediaType::from(media_type.as_str()))
            .digest(parsed_digest)
            .size(bytes.len() as u64)
            .build()
            .map_err(|e| ImageError::Registry {
                reference: reference.whole(),
                message: format!("describing the manifest: {e}"),
            })
    }

    async fn download_blob(
        &self,
        client: &Client,
        reference: &Reference,
        blob: &Descriptor,
        progress: Option<&ProgressFn>,
        downloads: &mut Downloads,
    ) -> Result<(), DownloadError> {
        let digest = digest_of(blob);
        let declared = blob.size();
        if self.blobs.contains(&digest) {
            return Ok(());
        }
        let hex = sha256_hex(&digest)
            .map_err(|e| DownloadError::Store(e.into()))?
            .to_string();
        let locks = self.root.join("locks");
        std::fs::create_dir_all(&locks).map_err(|source| {
            DownloadError::Store(ImageError::Io {
                path: locks.clone(),
                source,
            })
        })?;
        let lock_path = locks.join(format!("blob-{hex}.lock"));
        let _guard = tokio::task::spawn_blocking(move || {
            boxlite_lockfile::lock(
                &lock_path,
                boxlite_lockfile::LockMode::Exclusive,
                Some(BLOB_LOCK_TIMEOUT),
            )
        })
        .await
        .expect("lock task panicked")
        .map_err(|e| DownloadError::Store(e.into()))?;
        // Another process may have fetched it while this one waited.
        let Some(mut writer) = self
            .blobs
            .writer(&digest)
            .map_err(|e| DownloadError::Store(e.into()))?
        else {
            return Ok(());
        };
        let mut stream = client
            .pull_blob_stream(reference, digest.as_str())
            .await
            .map_err(DownloadError::Registry)?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                DownloadError::Store(ImageError::Registry {
                    reference: reference.whole(),
                    message: format!("downloading {}: {}", digest, describe(&e)),
                })
            })?;
            // Cut off at the declared size: a registry cannot make us store more.
            let received = writer.size() + chunk.len() as u64;
            if received > declared {
                return Err(DownloadError::Store(ImageError::Registry {
                    reference: reference.whole(),
                    message: format!(
                        "blob {} is larger than the {} bytes its descriptor declares; refused",
                        digest, declared
                    ),
                }));
            }
            writer
                .write(&chunk)
                .map_err(|e| DownloadError::Store(e.into()))?;
            if let Some(progress) = progress {
                (progress.0)(&PullProgress {
                    digest: digest.clone(),
                    received: writer.size(),
                    total: declared,
                });
            }
        }
        let size = writer.size();
        writer
            .commit(Some(declared))
            .map_err(|e| DownloadError::Store(e.into()))?;
        downloads.blobs += 1;
        downloads.bytes += size;
        Ok(())
    }
}

#[derive(Default)]
struct Downloads {
    blobs: usize,
    bytes: u64,
}

enum PullFailure {
    NotFound(String),
    Fatal(ImageError),
}

enum DownloadError {
    Registry(OciDistributionError),
    Store(ImageError),
}

fn parse<T: serde::de::DeserializeOwned>(
    reference: &Reference,
    what: &'static str,
    bytes: &[u8],
) -> Result<T, PullFailure> {
    serde_json::from_slice(bytes).map_err(|source| {
        PullFailure::Fatal(ImageError::Json {
            image: reference.whole(),
            what,
            source,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unqualified_names_go_through_the_registries_in_order() {
        let registries = vec!["127.0.0.1:5000".to_string(), "ghcr.io/".to_string()];
        assert_eq!(
            candidates("busybox:1", &registries),
            ["127.0.0.1:5000/busybox:1", "ghcr.io/busybox:1"]
        );
        assert_eq!(candidates("quay.io/x/y:2", &registries), ["quay.io/x/y:2"]);
        assert_eq!(
            candidates("localhost:5000/y", &registries),
            ["localhost:5000/y"]
        );
        assert_eq!(candidates("library/alpine", &[]), ["library/alpine"]);
        let docker_hub: Reference = candidates("alpine", &[])[0].parse().unwrap();
        assert_eq!(docker_hub.whole(), "docker.io/library/alpine:latest");
    }

    #[test]
    fn plain_http_only_for_loopback() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("localhost"));
        assert!(is_loopback("[::1]:5000"));
        assert!(is_loopback("127.0.0.2"));
        assert!(!is_loopback("registry.example.com:5000"));
        assert!(!is_loopback("10.0.0.1:5000"));
        // Names that only look like loopback addresses are names.
        assert!(!is_loopback("127.evil.example"));
        assert!(!is_loopback("127.evil.example:5000"));
        assert!(!is_loopback("localhost.evil.example"));
        assert!(!is_loopback("[::2]:5000"));
    }

    /// A real credential helper process speaking Docker's protocol (a shell script).
    fn install_helper(dir: &Path, name: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(format!("docker-credential-{name}"));
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn credential_helpers_answer_first_and_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        // Echoes the server it was asked about back as the user name.
        install_helper(
            &bin,
            "store",
            r#"read server; [ "$1" = get ] || exit 2; printf '{"ServerURL":"%s","Username":"%s","Secret":"s3"}' "$server" "$server""#,
        );
        install_helper(&bin, "none", "echo 'credentials not found' >&2; exit 1");
        install_helper(&bin, "chatty", "head -c 200000 /dev/zero");
        let config = dir.path().join("config.json");
        let encoded = base64::engine::general_purpose::STANDARD.encode("plain:old");
        std::fs::write(
            &config,
            format!(
                r#"{{"credsStore":"store","credHelpers":{{"quay.io":"none","gcr.io":"chatty"}},
                    "auths":{{"quay.io":{{"auth":"{encoded}"}}}}}}"#
            ),
        )
        .unwrap();
        let path = Some(bin.as_os_str());
        let auth = |registry| docker_auth_searching(&config, registry, path);
        assert!(
            matches!(auth("ghcr.io"), RegistryAuth::Basic(u, p) if u == "ghcr.io" && p == "s3")
        );
        assert!(matches!(auth("docker.io"),
            RegistryAuth::Basic(u, _) if u == "https://index.docker.io/v1/"));
        // The per-registry helper wins; when it has nothing, auths still count.
        assert!(matches!(auth("quay.io"), RegistryAuth::Basic(u, p) if u == "plain" && p == "old"));
        assert!(matches!(auth("gcr.io"), RegistryAuth::Anonymous));
        assert!(credential_helper("chatty", "gcr.io", path)
            .unwrap_err()
            .contains("more than"));
        assert!(credential_helper("../x", "gcr.io", path).is_err());
        assert!(credential_helper("missing", "gcr.io", path)
            .unwrap_err()
            .contains("not found"));
    }

    #[test]
    fn credentials_come_from_the_docker_config() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        let encoded = base64::engine::general_purpose::STANDARD.encode("user:secret");
        std::fs::write(
            &config,
            format!(r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{encoded}"}},"ghcr.io":{{"auth":"{encoded}"}}}}}}"#),
        )
        .unwrap();
        for registry in ["docker.io", "ghcr.io"] {
            assert!(
                matches!(docker_auth(&config, registry), RegistryAuth::Basic(u, p) if u == "user" && p == "secret")
            );
        }
        assert!(matches!(
            docker_auth(&config, "quay.io"),
            RegistryAuth::Anonymous
        ));
        assert!(matches!(
            docker_auth(&dir.path().join("missing.json"), "ghcr.io"),
            RegistryAuth::Anonymous
        ));
    }
}
