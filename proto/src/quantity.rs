//! Kubernetes quantities (`resource.Quantity` as the API writes them: `1Gi`, `500m`,
//! `110`), read as numbers: the agent judges limits and capacity with them, the collector
//! quotas.

/// Bytes of a Kubernetes quantity (`1Gi`, `500M`, `2147483648`, `1e9`); `None` when it does
/// not parse.
pub fn quantity_bytes(q: &str) -> Option<u64> {
    quantity(q).map(|v| v as u64)
}

/// The value of a Kubernetes quantity (`1Gi`, `500m` CPU is 0.5, `110` pods); `None` when
/// it does not parse.
pub fn quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e')
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let value: f64 = number.parse().ok()?;
    let factor: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "m" => 1e-3,
        _ => return None,
    };
    Some(value * factor)
}

#[cfg(test)]
mod tests {
    use super::{quantity, quantity_bytes};

    #[test]
    fn quantities_as_kubernetes_writes_them() {
        assert_eq!(quantity("250m"), Some(0.25));
        assert_eq!(quantity("110"), Some(110.0));
        assert_eq!(quantity_bytes("50Mi"), Some(50 << 20));
        assert_eq!(quantity_bytes("1Gi"), Some(1 << 30));
        assert_eq!(quantity_bytes("500M"), Some(500_000_000));
        assert_eq!(quantity_bytes("2147483648"), Some(2_147_483_648));
        assert_eq!(quantity_bytes("1e9"), Some(1_000_000_000));
        assert_eq!(quantity_bytes("12Gi"), Some(12 << 30));
        assert_eq!(quantity_bytes("lots"), None);
    }
}
