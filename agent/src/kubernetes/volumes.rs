//! Which claim a pod's volume belongs to. A volume's directory under
//! `/var/lib/kubelet/pods/<uid>/volumes/<plugin>/` is named after its PersistentVolume; the
//! PV's `claimRef` names the claim. PVs are asked for one at a time, by name, when a probe
//! first meets one (no cluster-wide list: a large cluster has thousands), and remembered.

use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::api::core::v1::PersistentVolume;
use kube::{Api, Client};

use super::view::KubeView;

/// What is known of one volume directory's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Volume {
    /// Asked for, no answer yet.
    Asked,
    /// A PersistentVolume bound to this claim.
    Claim {
        /// The claim's namespace.
        namespace: String,
        /// The claim's name.
        name: String,
    },
    /// No PV of this name (an inline or ephemeral volume), or one bound to no claim.
    Unclaimed,
}

/// The volumes asked about, by directory name; bounded by [`MAX_VOLUMES`].
#[derive(Debug, Default)]
pub struct Volumes(BTreeMap<String, Volume>);

/// Volume names remembered at most (a node mounts far fewer at once).
const MAX_VOLUMES: usize = 2048;

impl Volumes {
    /// What is known of `name`; `None` the first time (the caller asks for it).
    pub fn get(&self, name: &str) -> Option<&Volume> {
        self.0.get(name)
    }

    /// Marks `name` asked for; false when it already was.
    pub(crate) fn ask(&mut self, name: &str) -> bool {
        if self.0.contains_key(name) {
            return false;
        }
        if self.0.len() >= MAX_VOLUMES {
            self.0.clear();
        }
        self.0.insert(name.to_owned(), Volume::Asked);
        true
    }

    fn asked(&self) -> Vec<String> {
        self.0
            .iter()
            .filter(|(_, v)| **v == Volume::Asked)
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn answer(&mut self, name: &str, volume: Volume) {
        self.0.insert(name.to_owned(), volume);
    }
}

/// The claim of a PersistentVolume, as stored.
fn claim_of(pv: Option<PersistentVolume>) -> Volume {
    let claim = pv
        .and_then(|pv| pv.spec)
        .and_then(|spec| spec.claim_ref)
        .and_then(|r| Some((r.namespace?, r.name?)));
    match claim {
        Some((namespace, name)) => Volume::Claim { namespace, name },
        None => Volume::Unclaimed,
    }
}

/// Answers the view's volume questions until the runtime stops: each PV asked for is
/// fetched once; an error leaves it asked, and it is tried again at the next question.
pub async fn resolve(client: Client, view: Arc<KubeView>) {
    let api: Api<PersistentVolume> = Api::all(client);
    loop {
        view.volume_asked().await;
        for name in view.with(|c| c.volumes.asked()) {
            match api.get_opt(&name).await {
                Ok(pv) => view.with(|c| c.volumes.answer(&name, claim_of(pv))),
                Err(e) => view.error(&format!("persistentvolume {name}: {e}")),
            }
        }
    }
}
