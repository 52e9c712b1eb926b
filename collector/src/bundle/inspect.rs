//! Checking a bundle: every entry is a plain file at a safe relative path, its size and
//! SHA-256 match the manifest, and nothing is missing or extra. The first problem is named
//! with the file it is in. Entries are hashed as they stream out of the decoder, so memory
//! stays bounded however large the bundle (or a decompression bomb posing as one); only the
//! files the caller asks to keep are held, each up to [`MAX_KEPT`].

use std::{
    collections::BTreeMap,
    io::Read,
    path::{Component, Path},
};

use sha2::{Digest, Sha256};

use super::{MANIFEST, Manifest, hex};

/// The largest file kept in memory (the manifest, or one the caller keeps).
pub const MAX_KEPT: u64 = 256 << 20;

/// A bundle that is not what its manifest says, or not a bundle.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The archive cannot be read (truncated, corrupt compression, not tar.zst).
    #[error("the bundle is corrupt or truncated{}: {reason}", at.as_ref().map(|p| format!(" in {p}")).unwrap_or_default())]
    Corrupt {
        /// The entry being read when it failed, if any.
        at: Option<String>,
        /// What the decoder said.
        reason: String,
    },
    /// An entry that must not be extracted.
    #[error("refusing entry {path:?}: {reason}")]
    Unsafe {
        /// The entry's path.
        path: String,
        /// Absolute, `..`, a link, ...
        reason: &'static str,
    },
    /// A file differs from the manifest.
    #[error("{path}: {reason}")]
    Mismatch {
        /// The file.
        path: String,
        /// Size or checksum.
        reason: String,
    },
    /// No manifest, or one that does not parse.
    #[error("bad manifest: {0}")]
    Manifest(String),
    /// A file to keep expands past [`MAX_KEPT`].
    #[error("{path}: expands past {} MiB; refusing to hold it", MAX_KEPT >> 20)]
    TooLarge {
        /// The file.
        path: String,
    },
}

/// A checked bundle.
#[derive(Debug)]
pub struct Inspected {
    /// Its manifest.
    pub manifest: Manifest,
    /// The contents of the files the caller kept, by path (all verified).
    pub files: BTreeMap<String, Vec<u8>>,
}

/// Reads and verifies a `.tar.zst` bundle, keeping the contents of the files `keep` names.
pub fn inspect(bundle: impl Read, keep: impl Fn(&str) -> bool) -> Result<Inspected, InspectError> {
    let corrupt = |at: Option<&str>, e: std::io::Error| InspectError::Corrupt {
        at: at.map(str::to_owned),
        reason: e.to_string(),
    };
    let decoder = zstd::stream::read::Decoder::new(bundle).map_err(|e| corrupt(None, e))?;
    let mut archive = tar::Archive::new(decoder);
    let mut files = BTreeMap::new();
    // Every entry's size and SHA-256, by path.
    let mut seen: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut manifest = None;
    for entry in archive.entries().map_err(|e| corrupt(None, e))? {
        let mut entry = entry.map_err(|e| corrupt(seen.keys().last().map(String::as_str), e))?;
        let path = entry
            .path()
            .map_err(|e| corrupt(None, e))?
            .to_string_lossy()
            .into_owned();
        check_path(&path)?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(InspectError::Unsafe {
                path,
                reason: "not a regular file (links are refused)",
            });
        }
        let kept = path == MANIFEST || keep(&path);
        let mut body = Vec::new();
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            let n = entry
                .read(&mut chunk)
                .map_err(|e| corrupt(Some(&path), e))?;
            if n == 0 {
                break;
            }
            size += n as u64;
            hasher.update(&chunk[..n]);
            if kept {
                if size > MAX_KEPT {
                    return Err(InspectError::TooLarge { path });
                }
                body.extend_from_slice(&chunk[..n]);
            }
        }
        if path == MANIFEST {
            manifest = Some(
                serde_json::from_slice::<Manifest>(&body)
                    .map_err(|e| InspectError::Manifest(e.to_string()))?,
            );
            continue;
        }
        if seen
            .insert(path.clone(), (size, hex(&hasher.finalize())))
            .is_some()
        {
            return Err(InspectError::Mismatch {
                path,
                reason: "appears twice".into(),
            });
        }
        if kept {
            files.insert(path, body);
        }
    }
    let manifest =
        manifest.ok_or_else(|| InspectError::Manifest(format!("no {MANIFEST} in the bundle")))?;
    for f in &manifest.files {
        let (size, sha) = seen.get(&f.path).ok_or_else(|| InspectError::Mismatch {
            path: f.path.clone(),
            reason: "listed in the manifest but missing".into(),
        })?;
        if *size != f.size {
            return Err(InspectError::Mismatch {
                path: f.path.clone(),
                reason: format!("{size} bytes, the manifest says {}", f.size),
            });
        }
        if *sha != f.sha256 {
            return Err(InspectError::Mismatch {
                path: f.path.clone(),
                reason: format!("SHA-256 {sha}, the manifest says {}", f.sha256),
            });
        }
    }
    if let Some(extra) = seen
        .keys()
        .find(|p| !manifest.files.iter().any(|f| &f.path == *p))
    {
        return Err(InspectError::Mismatch {
            path: extra.clone(),
            reason: "not listed in the manifest".into(),
        });
    }
    Ok(Inspected { manifest, files })
}

/// Only plain relative paths: no root, no `..`, no `.`.
fn check_path(path: &str) -> Result<(), InspectError> {
    let unsafe_path = |reason| InspectError::Unsafe {
        path: path.to_owned(),
        reason,
    };
    for c in Path::new(path).components() {
        match c {
            Component::Normal(_) => {}
            Component::RootDir | Component::Prefix(_) => return Err(unsafe_path("absolute path")),
            Component::ParentDir => return Err(unsafe_path("contains ..")),
            Component::CurDir => return Err(unsafe_path("contains .")),
        }
    }
    if path.is_empty() {
        return Err(unsafe_path("empty path"));
    }
    Ok(())
}
