//! Findings from the cluster's own objects, one function per check: what no node agent can
//! see (quotas that refuse pods before they exist, claims no volume is made for,
//! certificates kept in Secrets). Pure: the objects in, findings out.

use std::time::{Duration, SystemTime};

use k8s_openapi::{
    api::core::v1::{Event, PersistentVolumeClaim, ResourceQuota, Secret},
    apimachinery::pkg::apis::meta::v1::Time,
};
use kube::api::DynamicObject;
use nodemedic_proto::{
    checks,
    quantity::quantity,
    v1::{Evidence, Finding, Severity},
};
use x509_parser::pem::Pem;

/// The lines the objects are judged against.
#[derive(Debug, Clone, PartialEq)]
pub struct Lines {
    /// `cluster.quota_near_limit` at this share of a hard limit used (percent).
    pub quota_percent: f64,
    /// Events this recent count.
    pub window: Duration,
    /// `cluster.pvc_pending` once a claim has been Pending this long.
    pub pvc_pending_after: Duration,
    /// `cluster.cert_expiry` warning within this ...
    pub cert_warn_within: Duration,
    /// ... and critical within this.
    pub cert_critical_within: Duration,
}

impl Default for Lines {
    fn default() -> Self {
        Lines {
            quota_percent: 90.0,
            window: Duration::from_secs(3600),
            pvc_pending_after: Duration::from_secs(300),
            cert_warn_within: Duration::from_secs(14 * 86_400),
            cert_critical_within: Duration::from_secs(3 * 86_400),
        }
    }
}

fn time(t: &Time) -> SystemTime {
    SystemTime::from(t.0)
}

/// When an event last happened.
fn last(e: &Event) -> Option<SystemTime> {
    e.series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref().map(|t| SystemTime::from(t.0)))
        .or_else(|| e.last_timestamp.as_ref().map(time))
        .or_else(|| e.event_time.as_ref().map(|t| SystemTime::from(t.0)))
        .or_else(|| e.first_timestamp.as_ref().map(time))
}

fn recent(e: &Event, window: Duration, now: SystemTime) -> bool {
    last(e).is_some_and(|t| t + window >= now)
}

/// `cluster.quota_near_limit`: each hard limit of a quota used at or past the line.
pub fn quotas(quotas: &[ResourceQuota], lines: &Lines) -> Vec<Finding> {
    let mut out = Vec::new();
    for q in quotas {
        let namespace = q.metadata.namespace.clone().unwrap_or_default();
        let name = q.metadata.name.clone().unwrap_or_default();
        let Some(status) = &q.status else { continue };
        let (Some(hard), Some(used)) = (&status.hard, &status.used) else {
            continue;
        };
        for (resource, limit) in hard {
            let (Some(limit_value), Some(used_value)) = (
                quantity(&limit.0),
                used.get(resource).and_then(|u| quantity(&u.0)),
            ) else {
                continue;
            };
            if limit_value <= 0.0 {
                continue;
            }
            let share = used_value / limit_value * 100.0;
            if share < lines.quota_percent {
                continue;
            }
            let used_text = &used[resource].0;
            out.push(
                Finding::fail(
                    checks::CLUSTER_QUOTA_NEAR_LIMIT,
                    if share >= 100.0 {
                        Severity::Critical
                    } else {
                        Severity::Warning
                    },
                    &format!("{namespace}/{name}/{resource}"),
                    format!(
                        "ResourceQuota {namespace}/{name} has {used_text} of its {} {resource} used ({share:.0}%): new pods (and their ReplicaSets' replacements) that would pass it are refused",
                        limit.0
                    ),
                )
                .with(Evidence::text("namespace", namespace.clone()))
                .with(Evidence::text("quota", name.clone()))
                .with(Evidence::text("resource", resource.clone()))
                .with(Evidence::text("used", used_text.clone()))
                .with(Evidence::text("hard", limit.0.clone()))
                .with(Evidence::percent("used_percent", share)),
            );
        }
    }
    out
}

/// `cluster.quota_exceeded`: FailedCreate events of controllers whose pods the quota
/// refused, one per controller.
pub fn quota_refusals(events: &[Event], lines: &Lines, now: SystemTime) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    for e in events.iter().filter(|e| {
        e.reason.as_deref() == Some("FailedCreate")
            && recent(e, lines.window, now)
            && e.message
                .as_deref()
                .is_some_and(|m| m.contains("exceeded quota") || m.contains("failed quota"))
    }) {
        let o = &e.involved_object;
        let namespace = o.namespace.clone().unwrap_or_default();
        let owner = format!(
            "{}/{}",
            o.kind.as_deref().unwrap_or("object"),
            o.name.as_deref().unwrap_or_default()
        );
        let subject = format!("{namespace}/{owner}");
        if out.iter().any(|f| f.subject == subject) {
            continue;
        }
        let message = e.message.clone().unwrap_or_default();
        let quota = message
            .split_once("quota: ")
            .map(|(_, rest)| rest.split([',', ':']).next().unwrap_or_default().trim())
            .unwrap_or_default()
            .to_owned();
        out.push(
            Finding::fail(
                checks::CLUSTER_QUOTA_EXCEEDED,
                Severity::Warning,
                &subject,
                format!(
                    "{owner} in {namespace} cannot create its pods ({} times): {message}",
                    e.count.unwrap_or(1).max(1)
                ),
            )
            .with(Evidence::text("namespace", namespace))
            .with(Evidence::text("owner", owner))
            .with(Evidence::text("quota", quota))
            .with(Evidence::text("event_message", message)),
        );
    }
    out
}

/// `cluster.pvc_pending`: claims Pending past the line with ProvisioningFailed events.
pub fn pvcs_pending(
    pvcs: &[PersistentVolumeClaim],
    events: &[Event],
    lines: &Lines,
    now: SystemTime,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for pvc in pvcs {
        let pending = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending");
        let created = pvc.metadata.creation_timestamp.as_ref().map(time);
        let old_enough = created.is_some_and(|c| c + lines.pvc_pending_after <= now);
        if !pending || !old_enough {
            continue;
        }
        let namespace = pvc.metadata.namespace.clone().unwrap_or_default();
        let name = pvc.metadata.name.clone().unwrap_or_default();
        let failed = events
            .iter()
            .filter(|e| {
                e.reason.as_deref() == Some("ProvisioningFailed")
                    && e.involved_object.kind.as_deref() == Some("PersistentVolumeClaim")
                    && e.involved_object.namespace.as_deref() == Some(namespace.as_str())
                    && e.involved_object.name.as_deref() == Some(name.as_str())
                    && recent(e, lines.window, now)
            })
            .max_by_key(|e| last(e));
        let Some(event) = failed else { continue };
        let class = pvc
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.clone())
            .unwrap_or_default();
        let message = event.message.clone().unwrap_or_default();
        out.push(
            Finding::fail(
                checks::CLUSTER_PVC_PENDING,
                Severity::Warning,
                &format!("{namespace}/{name}"),
                format!(
                    "PersistentVolumeClaim {namespace}/{name} (storage class {}) is Pending: its volume cannot be provisioned: {message}",
                    if class.is_empty() { "default" } else { &class }
                ),
            )
            .with(Evidence::text("namespace", namespace))
            .with(Evidence::text("claim", name))
            .with(Evidence::text("storage_class", class))
            .with(Evidence::text("event_message", message)),
        );
    }
    out
}

/// The expiry of the first certificate in PEM bytes, and its subject.
fn leaf_expiry(pem: &[u8]) -> Option<(SystemTime, String)> {
    let block = Pem::iter_from_buffer(pem)
        .filter_map(Result::ok)
        .find(|p| p.label == "CERTIFICATE")?;
    let cert = block.parse_x509().ok()?;
    let secs = cert.validity().not_after.timestamp().max(0) as u64;
    Some((
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
        cert.subject().to_string(),
    ))
}

/// `cluster.cert_expiry` for one certificate: `what` names where it is kept.
pub fn expiry(what: &str, pem: &[u8], lines: &Lines, now: SystemTime) -> Option<Finding> {
    let (until, subject) = leaf_expiry(pem)?;
    let left = until.duration_since(now).unwrap_or_default();
    let severity = if left <= lines.cert_critical_within {
        Severity::Critical
    } else if left <= lines.cert_warn_within {
        Severity::Warning
    } else {
        return None;
    };
    let when = if left.is_zero() {
        "has expired".to_owned()
    } else {
        format!(
            "expires in {}",
            humantime::format_duration(Duration::from_secs(left.as_secs() / 3600 * 3600))
        )
    };
    Some(
        Finding::fail(
            checks::CLUSTER_CERT_EXPIRY,
            severity,
            what,
            format!(
                "the certificate in {what} ({subject}) {when}: TLS to what serves it fails then"
            ),
        )
        .with(Evidence::text("certificate", what))
        .with(Evidence::text("certificate_subject", subject))
        .with(Evidence::text(
            "not_after",
            humantime::format_rfc3339_seconds(until).to_string(),
        )),
    )
}

/// `cluster.cert_expiry` of every TLS Secret (`kubernetes.io/tls`, its `tls.crt`).
pub fn tls_secrets(secrets: &[Secret], lines: &Lines, now: SystemTime) -> Vec<Finding> {
    secrets
        .iter()
        .filter(|s| s.type_.as_deref() == Some("kubernetes.io/tls"))
        .filter_map(|s| {
            let pem = s.data.as_ref()?.get("tls.crt")?;
            let what = format!(
                "Secret {}/{}",
                s.metadata.namespace.as_deref().unwrap_or_default(),
                s.metadata.name.as_deref().unwrap_or_default()
            );
            expiry(&what, &pem.0, lines, now).map(|f| {
                f.with(Evidence::text(
                    "namespace",
                    s.metadata.namespace.clone().unwrap_or_default(),
                ))
                .with(Evidence::text(
                    "secret",
                    s.metadata.name.clone().unwrap_or_default(),
                ))
            })
        })
        .collect()
}

/// `cluster.cert_not_renewed`: cert-manager Certificates past their `renewalTime` (their
/// `renewBefore` line) and not renewed: the issuer fails.
pub fn certificates(certs: &[DynamicObject], now: SystemTime) -> Vec<Finding> {
    let mut out = Vec::new();
    for c in certs {
        let status = &c.data["status"];
        let parse = |field: &str| {
            status[field]
                .as_str()
                .and_then(|t| humantime::parse_rfc3339(t).ok())
        };
        let Some(renewal) = parse("renewalTime") else {
            continue;
        };
        // cert-manager retries for a while: a Certificate an hour past is not renewing.
        if renewal + Duration::from_secs(3600) > now {
            continue;
        }
        let namespace = c.metadata.namespace.clone().unwrap_or_default();
        let name = c.metadata.name.clone().unwrap_or_default();
        let ready = status["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
            .map(|c| c["message"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default();
        let not_after = parse("notAfter");
        let mut f = Finding::fail(
            checks::CLUSTER_CERT_NOT_RENEWED,
            if not_after.is_some_and(|t| t <= now + Duration::from_secs(3 * 86_400)) {
                Severity::Critical
            } else {
                Severity::Warning
            },
            &format!("{namespace}/{name}"),
            format!(
                "cert-manager Certificate {namespace}/{name} should have been renewed at {} and was not{}",
                humantime::format_rfc3339_seconds(renewal),
                if ready.is_empty() {
                    String::new()
                } else {
                    format!(": {ready}")
                }
            ),
        )
        .with(Evidence::text("namespace", namespace))
        .with(Evidence::text("certificate", name))
        .with(Evidence::text(
            "secret",
            c.data["spec"]["secretName"].as_str().unwrap_or_default(),
        ));
        if let Some(t) = not_after {
            f = f.with(Evidence::text(
                "not_after",
                humantime::format_rfc3339_seconds(t).to_string(),
            ));
        }
        out.push(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dynamic(json: serde_json::Value) -> DynamicObject {
        serde_json::from_value(json).unwrap()
    }

    /// A Certificate as cert-manager's status writes it: past its renewal time and not
    /// renewed (its issuer fails), and one renewed on time.
    #[test]
    fn certificates_past_their_renewal_time() {
        let now = humantime::parse_rfc3339("2025-03-01T12:00:00Z").unwrap();
        let stuck = dynamic(serde_json::json!({
            "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": "shop-tls", "namespace": "shop"},
            "spec": {"secretName": "shop-tls"},
            "status": {
                "notAfter": "2025-03-03T00:00:00Z",
                "renewalTime": "2025-02-01T00:00:00Z",
                "conditions": [{"type": "Ready", "status": "False", "message": "Issuing certificate as Secret was previously issued by Issuer.cert-manager.io/letsencrypt"}],
            },
        }));
        let fine = dynamic(serde_json::json!({
            "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": "api-tls", "namespace": "shop"},
            "spec": {"secretName": "api-tls"},
            "status": {"notAfter": "2025-05-30T00:00:00Z", "renewalTime": "2025-04-30T00:00:00Z"},
        }));
        let found = certificates(&[stuck, fine], now);
        assert_eq!(found.len(), 1, "{found:#?}");
        let f = &found[0];
        assert_eq!(f.subject, "shop/shop-tls");
        assert_eq!(f.severity(), Severity::Critical, "expires within 3 days");
        assert!(f.message.contains("letsencrypt"), "{}", f.message);
        assert_eq!(f.text("secret"), Some("shop-tls"));
    }

    #[test]
    fn a_certificate_is_judged_by_its_days_left() {
        let make = |days: i64| {
            let mut params = rcgen::CertificateParams::new(vec!["collector".into()]).unwrap();
            let now = time::OffsetDateTime::now_utc();
            params.not_before = now - time::Duration::days(30);
            params.not_after = now + time::Duration::days(days);
            let key = rcgen::KeyPair::generate().unwrap();
            params.self_signed(&key).unwrap().pem()
        };
        let lines = Lines::default();
        let now = SystemTime::now();
        let severity =
            |days| expiry("it", make(days).as_bytes(), &lines, now).map(|f| f.severity());
        assert_eq!(severity(60), None);
        assert_eq!(severity(10), Some(Severity::Warning));
        assert_eq!(severity(2), Some(Severity::Critical));
        assert_eq!(severity(-1), Some(Severity::Critical));
        assert!(expiry("it", b"not a certificate", &lines, now).is_none());
    }
}
