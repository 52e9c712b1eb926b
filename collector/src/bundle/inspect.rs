//! Checking a bundle: every entry is a plain file at a safe relative path, its size and
//! SHA-256 match the manifest, and nothing is missing or extra. The first problem is named
//! with the file it is in.

use std::{
    collections::BTreeMap,
    io::Read,
    path::{Component, Path},
};

use super::{MANIFEST, Manifest, sha256_hex};

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
}

/// A checked bundle.
#[derive(Debug)]
pub struct Inspected {
    /// Its manifest.
    pub manifest: Manifest,
    /// Its files' contents, by path (the manifest's files, all verified).
    pub files: BTreeMap<String, Vec<u8>>,
}

/// Reads and verifies a `.tar.zst` bundle.
pub fn inspect(bundle: impl Read) -> Result<Inspected, InspectError> {
    let corrupt = |at: Option<&str>, e: std::io::Error| InspectError::Corrupt {
        at: at.map(str::to_owned),
        reason: e.to_string(),
    };
    let decoder = zstd::stream::read::Decoder::new(bundle).map_err(|e| corrupt(None, e))?;
    let mut archive = tar::Archive::new(decoder);
    let mut files = BTreeMap::new();
    let mut manifest = None;
    for entry in archive.entries().map_err(|e| corrupt(None, e))? {
        let mut entry = entry.map_err(|e| corrupt(files.keys().last().map(String::as_str), e))?;
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
        let mut body = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut body)
            .map_err(|e| corrupt(Some(&path), e))?;
        if path == MANIFEST {
            manifest = Some(
                serde_json::from_slice::<Manifest>(&body)
                    .map_err(|e| InspectError::Manifest(e.to_string()))?,
            );
        } else if files.insert(path.clone(), body).is_some() {
            return Err(InspectError::Mismatch {
                path,
                reason: "appears twice".into(),
            });
        }
    }
    let manifest =
        manifest.ok_or_else(|| InspectError::Manifest(format!("no {MANIFEST} in the bundle")))?;
    for f in &manifest.files {
        let body = files.get(&f.path).ok_or_else(|| InspectError::Mismatch {
            path: f.path.clone(),
            reason: "listed in the manifest but missing".into(),
        })?;
        if body.len() as u64 != f.size {
            return Err(InspectError::Mismatch {
                path: f.path.clone(),
                reason: format!("{} bytes, the manifest says {}", body.len(), f.size),
            });
        }
        let sha = sha256_hex(body);
        if sha != f.sha256 {
            return Err(InspectError::Mismatch {
                path: f.path.clone(),
                reason: format!("SHA-256 {sha}, the manifest says {}", f.sha256),
            });
        }
    }
    if let Some(extra) = files
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
