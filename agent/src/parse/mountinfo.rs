//! `/proc/<pid>/mountinfo`, parsed by hand: procfs-core has a parser for it, but it leaves
//! the kernel's octal escapes in paths undone and builds two maps of options per mount, which
//! made the mount table 2.4 times as costly to read (BENCHMARKS.md, "Host files").
//!
//! ```text
//! 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//! (1)(2)(3)   (4)   (5)      (6)      (7)   (8) (9)   (10)         (11)
//! ```
//! Fields 7 are zero or more optional tags ended by `-`. Paths escape space, tab, newline
//! and backslash as octal (`\040`).

use super::ParseError;

/// One mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// `major:minor` of the filesystem: bind mounts of one filesystem share it.
    pub device_id: String,
    /// The directory of the filesystem mounted here (`/` unless a bind mount of a subtree).
    pub root: String,
    /// Where it is mounted.
    pub mount_point: String,
    /// Per-mount options (`rw`, `ro`, `nosuid`, ...).
    pub mount_options: String,
    /// Filesystem type (`ext4`, `tmpfs`, ...).
    pub fs_type: String,
    /// The mount source, usually a device.
    pub source: String,
    /// Per-superblock options; `errors=remount-ro` turns `rw` here into `ro`.
    pub super_options: String,
}

impl MountInfo {
    /// Read-only at the mount or at the superblock.
    pub fn read_only(&self) -> bool {
        let has_ro = |opts: &str| opts.split(',').any(|o| o == "ro");
        has_ro(&self.mount_options) || has_ro(&self.super_options)
    }
}

/// Parses every line of a mountinfo file.
pub fn parse(text: &str) -> Result<Vec<MountInfo>, ParseError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| parse_line(line).map_err(|reason| ParseError::new(i + 1, reason)))
        .collect()
}

fn parse_line(line: &str) -> Result<MountInfo, String> {
    let (before, after) = line
        .split_once(" - ")
        .ok_or_else(|| "no \" - \" separator before the filesystem type".to_owned())?;
    let mut head = before.split_whitespace();
    let mut next = |what: &str| head.next().ok_or_else(|| format!("missing {what}"));
    let _mount_id = next("mount id")?;
    let _parent_id = next("parent id")?;
    let device_id = next("major:minor")?.to_owned();
    let root = unescape(next("root")?);
    let mount_point = unescape(next("mount point")?);
    let mount_options = next("mount options")?.to_owned();
    let mut tail = after.split_whitespace();
    let fs_type = tail.next().ok_or("missing filesystem type")?.to_owned();
    let source = unescape(tail.next().unwrap_or_default());
    let super_options = tail.next().unwrap_or_default().to_owned();
    if !device_id.contains(':') {
        return Err(format!("device {device_id:?} is not major:minor"));
    }
    Ok(MountInfo {
        device_id,
        root,
        mount_point,
        mount_options,
        fs_type,
        source,
        super_options,
    })
}

/// Decodes the kernel's octal escapes (`\040` is a space).
fn unescape(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_owned();
    }
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        // Three octal digits of one byte: `\000` to `\377` (`\666` is not an escape; the
        // fuzzer found it overflowing).
        let octal = bytes.get(i + 1..i + 4).filter(|d| {
            (b'0'..=b'3').contains(&d[0]) && d[1..].iter().all(|b| (b'0'..=b'7').contains(b))
        });
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture;

    #[test]
    fn only_escapes_of_one_byte_are_decoded() {
        assert_eq!(unescape(r"/mnt/my\040disk"), "/mnt/my disk");
        assert_eq!(unescape(r"/d\377"), "/d\u{fffd}");
        assert_eq!(
            unescape(r"/d\666x"),
            r"/d\666x",
            "out of a byte's range: kept as is"
        );
    }

    #[test]
    fn parses_a_real_k8s_node() {
        let mounts = parse(&fixture("proc/hotsos-k8s-node-pid1-mountinfo")).unwrap();
        assert_eq!(mounts.len(), 56);
        let root = mounts.iter().find(|m| m.mount_point == "/").unwrap();
        assert_eq!(root.fs_type, "ext4");
        assert!(!root.read_only());
        assert!(
            mounts
                .iter()
                .any(|m| m.fs_type == "squashfs" && m.read_only())
        );
    }

    #[test]
    fn parses_nfs_overlay_and_empty_fields() {
        let mounts = parse(&fixture(
            "proc/procfs-go-fixture-pid-mountinfo-nfs-overlay-xfs",
        ))
        .unwrap();
        let nfs: Vec<_> = mounts
            .iter()
            .filter(|m| m.fs_type.starts_with("nfs"))
            .collect();
        assert_eq!(nfs.len(), 3);
        assert_eq!(nfs[0].source, "192.168.1.1:/srv/test");
        let xfs = mounts.iter().find(|m| m.fs_type == "xfs").unwrap();
        assert_eq!(xfs.root, "/var/lib/containers/storage/overlay");
        assert_eq!(xfs.device_id, "253:0");
    }

    #[test]
    fn unescapes_octal_and_sees_superblock_ro() {
        let m = parse(
            "40 1 8:1 / /mnt/my\\040disk rw,relatime - ext4 /dev/sda1 ro,errors=remount-ro\n",
        )
        .unwrap();
        assert_eq!(m[0].mount_point, "/mnt/my disk");
        assert!(m[0].read_only());
    }

    #[test]
    fn rejects_lines_without_separator() {
        let err = parse("36 35 98:0 / / rw\n").unwrap_err();
        assert_eq!(err.line, 1);
    }
}
