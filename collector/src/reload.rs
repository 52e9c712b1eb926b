//! Files read again when they change on disk, without a restart: the TLS certificates
//! (cert-manager and `kubectl create secret` update them in place, through a symlink swap)
//! and the token file. A reader asks for the current value; at most once a second that
//! looks at the files' modification time, size and inode, and loads them again when one
//! changed. A load that fails keeps the previous value in force, logged and counted, and is
//! tried again at the files' next change (a certificate written before its key, say).

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use tracing::{info, warn};

use crate::metrics::Metrics;

/// How often the files are looked at, at most.
const CHECK_EVERY: Duration = Duration::from_secs(1);

type Loader<T> = Box<dyn Fn() -> Result<T, String> + Send + Sync>;

/// What identifies a file's version: modification time, size, inode.
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamps(paths: &[PathBuf]) -> Vec<Stamp> {
    use std::os::unix::fs::MetadataExt;
    paths
        .iter()
        .map(|p| {
            // Follows symlinks: a Secret volume swaps the link, the target changes.
            let m = std::fs::metadata(p).ok()?;
            Some((m.modified().ok()?, m.len(), m.ino()))
        })
        .collect()
}

struct State<T> {
    current: Arc<T>,
    stamps: Vec<Stamp>,
    checked: Instant,
}

/// A value loaded from files, kept current.
pub struct Reloading<T> {
    what: &'static str,
    paths: Vec<PathBuf>,
    load: Loader<T>,
    /// What replaces the value when changed files cannot be loaded; `None`: the previous
    /// value stays in force.
    fail_closed: Option<Box<dyn Fn(String) -> T + Send + Sync>>,
    metrics: Arc<Metrics>,
    state: Mutex<State<T>>,
}

impl<T> Reloading<T> {
    /// Loads `what` with `load` now (an error here stops the start), and again whenever
    /// one of `paths` changes.
    pub fn load(
        what: &'static str,
        paths: Vec<PathBuf>,
        metrics: Arc<Metrics>,
        load: impl Fn() -> Result<T, String> + Send + Sync + 'static,
    ) -> Result<Self, String> {
        let stamps = stamps(&paths);
        let current = Arc::new(load()?);
        metrics.watching(what);
        Ok(Reloading {
            what,
            paths,
            load: Box::new(load),
            fail_closed: None,
            metrics,
            state: Mutex::new(State {
                current,
                stamps,
                checked: Instant::now(),
            }),
        })
    }

    /// Changed files that cannot be loaded replace the value with `closed(error)` instead of
    /// keeping the previous one: for what must not outlive an edit, such as a token file
    /// saved with a revoked token removed and a line broken.
    pub fn fail_closed(mut self, closed: impl Fn(String) -> T + Send + Sync + 'static) -> Self {
        self.fail_closed = Some(Box::new(closed));
        self
    }

    /// The current value, loaded again first if the files changed.
    pub fn get(&self) -> Arc<T> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.checked.elapsed() >= CHECK_EVERY {
            state.checked = Instant::now();
            let now = stamps(&self.paths);
            if now != state.stamps {
                state.stamps = now;
                match (self.load)() {
                    Ok(value) => {
                        state.current = Arc::new(value);
                        info!(message = "Reloaded changed files.", what = self.what);
                        self.metrics.reloaded(self.what, "ok");
                    }
                    Err(error) => {
                        self.metrics.reloaded(self.what, "error");
                        match &self.fail_closed {
                            Some(closed) => {
                                tracing::error!(message = "Changed files could not be loaded; refused as a whole until they are fixed.", what = self.what, %error);
                                state.current = Arc::new(closed(error));
                            }
                            None => {
                                warn!(message = "Changed files could not be loaded; the previous ones stay in force.", what = self.what, %error);
                            }
                        }
                    }
                }
            }
        }
        Arc::clone(&state.current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_is_loaded_again_and_a_broken_one_keeps_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("n");
        std::fs::write(&file, "1").unwrap();
        let metrics = Arc::new(Metrics::default());
        let path = file.clone();
        let watched = Reloading::load("number", vec![file.clone()], metrics.clone(), move || {
            let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
            text.trim().parse::<u32>().map_err(|e| e.to_string())
        })
        .unwrap();
        assert_eq!(*watched.get(), 1);
        // A different size makes the change visible whatever the clock's resolution.
        std::fs::write(&file, "22").unwrap();
        std::thread::sleep(CHECK_EVERY);
        assert_eq!(*watched.get(), 22);
        std::fs::write(&file, "not a number").unwrap();
        std::thread::sleep(CHECK_EVERY);
        assert_eq!(
            *watched.get(),
            22,
            "a broken file keeps the last good value"
        );
        let text = metrics.encode();
        assert!(
            text.contains(r#"nodemedic_reloads_total{what="number",result="ok"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"nodemedic_reloads_total{what="number",result="error"} 1"#),
            "{text}"
        );
    }
}
