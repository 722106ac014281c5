//! The live state a running mount publishes for `pxfs status` and `pxfs unmount`:
//! `CACHE/mounts/<mount point>.json`, rewritten atomically about every second and on every
//! change of state. A link next to the daemon's pid file points at it, so `pxfs unmount`
//! finds it from the mount point alone.
//!
//! Field names are a stable interface (they reach `pxfs status --json`). Times are Unix
//! seconds. No URLs: an RPC URL may carry an API key.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::fs::ops::status::{FsStatus, NodeHealth};

pub const SCHEMA: &str = "pxfs/mount-status/1";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MountStatus {
    pub schema: String,
    pub pid: u32,
    /// A string; an array of its bytes when the path is not UTF-8.
    #[serde(with = "super::mount_outcome::os_path")]
    pub mountpoint: PathBuf,
    pub chain_id: u64,
    pub contract: String,
    pub wallet: String,
    /// `mounted`, then `draining` once an unmount or signal started the final upload,
    /// then `stopped` with the `outcome` just before the daemon exits.
    pub state: String,
    pub started_at: u64,
    pub updated_at: u64,
    pub pending_files: u64,
    pub pending_bytes: u64,
    pub node: NodeReport,
    pub chain: ChainReport,
    pub tokens: Vec<MountedToken>,
    /// Work stopped for a local reason (a staged file gone, the cache disk full or
    /// read-only, too many open files): one line each, empty when all is well.
    #[serde(default)]
    pub local_faults: Vec<String>,
    /// Files and directories the daemon holds in memory (`[cache] max_loaded_inodes`).
    #[serde(default)]
    pub loaded_inodes: u64,
    /// Log lines and messages the daemon could not write (its log's disk full, its
    /// stderr's reader gone) and so dropped, since it started.
    #[serde(default)]
    pub dropped_log_lines: u64,
    /// Set once, as the daemon's last word before it exits (`state` is then `stopped`):
    /// whether everything was committed, or what stays in the journal and why.
    #[serde(default)]
    pub outcome: Option<super::mount_outcome::Outcome>,
    /// Each replica (`[node] replicas`, in order): its health and the trees it holds.
    #[serde(default)]
    pub replicas: Vec<ReplicaReport>,
}

/// One replica as the mount sees it. Named by host and port only (a URL may carry a key).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReplicaReport {
    pub host: String,
    pub healthy: bool,
    /// Copies fail since then (retried with backoff); the last error.
    pub failing_since: Option<u64>,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// The root each sNFT has there (copied and pinned).
    pub held: Vec<HeldRoot>,
    /// sNFTs whose newest committed tree it does not hold yet: its lag.
    pub behind: Vec<u64>,
    pub copied_blocks: u64,
    pub copied_bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HeldRoot {
    pub token_id: u64,
    pub root: String,
}

impl ReplicaReport {
    pub fn from_core(s: &FsStatus) -> Vec<ReplicaReport> {
        s.replicas
            .iter()
            .map(|r| {
                let (healthy, failing_since, attempts, last_error) = match &r.health {
                    crate::replica::Health::Healthy => (true, None, 0, None),
                    crate::replica::Health::Unknown => (false, None, 0, None),
                    crate::replica::Health::Failing {
                        since,
                        attempts,
                        error,
                    } => (false, Some(unix(*since)), *attempts, Some(error.clone())),
                };
                ReplicaReport {
                    host: host_of(&r.url),
                    healthy,
                    failing_since,
                    attempts,
                    last_error,
                    held: r
                        .held
                        .iter()
                        .map(|(t, root)| HeldRoot {
                            token_id: *t,
                            root: root.clone(),
                        })
                        .collect(),
                    behind: r.behind.clone(),
                    copied_blocks: r.copied_blocks,
                    copied_bytes: r.copied_bytes,
                }
            })
            .collect()
    }
}

/// `host:port` of a URL, nothing that could be a credential.
fn host_of(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port_or_known_default()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => "?".into(),
        },
        Err(_) => "?".into(),
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NodeReport {
    pub reachable: bool,
    pub last_ok: Option<u64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<u64>,
    /// Blocks the node returned that did not match their CID (refused; reads got `EIO`).
    #[serde(default)]
    pub corrupt_blocks: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ChainReport {
    /// The last poll reached the chain.
    pub reachable: bool,
    /// Quota and sync state are the last known ones, not current: polls fail or are late.
    pub stale: bool,
    /// The last successful poll.
    pub last_poll: Option<u64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<u64>,
    /// Polls failed in a row (0 while the chain answers).
    pub failed_polls: u64,
}

/// One token as the mount knows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MountedToken {
    pub token_id: u64,
    pub quota: u64,
    pub overdue: bool,
    pub last_sync: u64,
    pub sync_deadline: u64,
    pub btns_key: Option<String>,
    /// Live usage: committed and staged file bytes.
    pub usage: u64,
    pub files: u64,
    pub read_only: bool,
    pub pending_uploads: u64,
    pub pending_bytes: u64,
    pub last_commit: Option<u64>,
    pub last_root: Option<String>,
    pub usage_doc: Option<String>,
    pub seq: u64,
    #[serde(default)]
    pub encryption: String,
    /// Conflict copies made by merges with other machines' commits since the mount.
    #[serde(default)]
    pub conflicts: u64,
}

pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

pub fn now() -> u64 {
    unix(SystemTime::now())
}

impl NodeReport {
    pub fn from_health(h: &NodeHealth) -> NodeReport {
        NodeReport {
            reachable: h.reachable,
            last_ok: h.last_ok.map(unix),
            last_error: h.last_error.clone(),
            last_error_at: h.last_error_at.map(unix),
            corrupt_blocks: h.corrupt_blocks,
        }
    }
}

impl MountedToken {
    pub fn from_core(s: &FsStatus) -> Vec<MountedToken> {
        let mut v: Vec<MountedToken> = s
            .tokens
            .iter()
            .map(|t| MountedToken {
                token_id: t.token_id,
                quota: t.quota,
                overdue: t.overdue,
                last_sync: t.last_sync,
                sync_deadline: t.sync_deadline,
                btns_key: t.btns.clone(),
                usage: t.usage,
                files: t.files,
                read_only: t.read_only,
                pending_uploads: t.pending_uploads,
                pending_bytes: t.pending_bytes,
                last_commit: t.last_commit.map(unix),
                last_root: t.root.clone(),
                usage_doc: t.usage_doc.clone(),
                seq: t.seq,
                encryption: t.encryption.clone(),
                conflicts: t.conflicts,
            })
            .collect();
        v.sort_by_key(|t| t.token_id);
        v
    }
}

/// A file name for what belongs to the mount on `mountpoint` (its status file, its pid
/// file): one name per mount point, whatever bytes its path holds. Letters and digits stay,
/// every other byte is `_` and two hex digits (so `/mnt/a-b` and `/mnt/a_b` differ, and a
/// path that is not UTF-8 has a name too); a name too long for a file system ends in a hash
/// of the whole path instead.
pub fn file_stem(mountpoint: &Path) -> String {
    use std::fmt::Write;
    use std::os::unix::ffi::OsStrExt;
    let bytes = mountpoint.as_os_str().as_bytes();
    let mut name = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() {
            name.push(char::from(b));
        } else {
            let _ = write!(name, "_{b:02x}");
        }
    }
    const MAX: usize = 180;
    if name.len() > MAX {
        use sha2::Digest;
        let hash = sha2::Sha256::digest(bytes);
        name.truncate(MAX - 33);
        name.push('-');
        for b in &hash[..16] {
            let _ = write!(name, "{b:02x}");
        }
    }
    name
}

/// Where a mount on `mountpoint` with this cache directory publishes its state.
pub fn status_file(cache_dir: &Path, mountpoint: &Path) -> PathBuf {
    cache_dir
        .join("mounts")
        .join(format!("{}.json", file_stem(mountpoint)))
}

/// The link next to the daemon's pid file that points at its status file.
pub fn status_link(mountpoint: &Path) -> PathBuf {
    pid_file(mountpoint).with_extension("status.json")
}

/// Write `status` to `path` atomically (a reader sees the old or the new document).
pub fn write(path: &Path, status: &MountStatus) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    let json = serde_json::to_vec_pretty(status).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, path)
}

pub fn read(path: &Path) -> Option<MountStatus> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice::<MountStatus>(&bytes)
        .ok()
        .filter(|s| s.schema == SCHEMA)
}

pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks that the process exists.
    let alive = unsafe { libc::kill(pid, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    // A zombie has finished its work.
    alive
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(false)
}

/// Status documents of the mounts running from this cache directory.
pub fn running(cache_dir: &Path) -> Vec<MountStatus> {
    let Ok(entries) = std::fs::read_dir(cache_dir.join("mounts")) else {
        return Vec::new();
    };
    let mut out: Vec<MountStatus> = entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| read(&e.path()))
        .filter(|s| s.outcome.is_none() && pid_alive(s.pid))
        .collect();
    out.sort_by(|a, b| a.mountpoint.cmp(&b.mountpoint));
    out
}

/// Where the daemon records its pid, so `pxfs unmount` can wait for it to finish.
pub fn pid_file(mountpoint: &Path) -> PathBuf {
    let dir = match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) => PathBuf::from(d).join("pxfs"),
        // SAFETY: getuid has no preconditions and cannot fail.
        None => std::env::temp_dir().join(format!("pxfs-{}", unsafe { libc::getuid() })),
    };
    let name = file_stem(mountpoint);
    dir.join(format!("mount{name}.pid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> MountStatus {
        MountStatus {
            schema: SCHEMA.into(),
            pid: std::process::id(),
            mountpoint: "/mnt/px".into(),
            chain_id: 31337,
            contract: "0xc".into(),
            wallet: "0xw".into(),
            state: "mounted".into(),
            started_at: 1,
            updated_at: 2,
            pending_files: 3,
            pending_bytes: 4,
            node: NodeReport::default(),
            chain: ChainReport::default(),
            tokens: Vec::new(),
            local_faults: Vec::new(),
            loaded_inodes: 0,
            dropped_log_lines: 0,
            replicas: Vec::new(),
            outcome: None,
        }
    }

    #[test]
    fn a_written_status_reads_back_and_counts_as_running() {
        let dir = tempfile::tempdir().unwrap();
        let path = status_file(dir.path(), Path::new("/mnt/px"));
        write(&path, &sample()).unwrap();
        assert_eq!(read(&path), Some(sample()));
        assert_eq!(running(dir.path()), vec![sample()]);
    }

    #[test]
    fn a_dead_daemons_status_is_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = sample();
        s.pid = u32::MAX - 1;
        write(&status_file(dir.path(), Path::new("/mnt/px")), &s).unwrap();
        assert!(running(dir.path()).is_empty());
    }

    #[test]
    fn a_mount_point_that_is_not_utf8_has_a_status_that_reads_back() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let mut s = sample();
        s.mountpoint = PathBuf::from(std::ffi::OsStr::from_bytes(b"/mnt/caf\xe9"));
        let path = status_file(dir.path(), &s.mountpoint);
        write(&path, &s).unwrap();
        assert_eq!(read(&path), Some(s.clone()));
        assert_eq!(running(dir.path()), vec![s]);
    }

    #[test]
    fn each_mount_point_has_its_own_file_name() {
        use std::os::unix::ffi::OsStrExt;
        let points: Vec<&[u8]> = vec![
            b"/mnt/a-b",
            b"/mnt/a_b",
            b"/mnt/a b",
            b"/mnt/caf\xe9",
            b"/mnt/caf\xe8",
        ];
        let long_a = format!("/mnt/{}a", "x".repeat(300));
        let long_b = format!("/mnt/{}b", "x".repeat(300));
        let mut names: Vec<String> = points
            .iter()
            .map(|p| file_stem(Path::new(std::ffi::OsStr::from_bytes(p))))
            .chain([file_stem(Path::new(&long_a)), file_stem(Path::new(&long_b))])
            .collect();
        assert!(
            names.iter().all(|n| n.len() <= 200 && !n.contains('/')),
            "{names:?}"
        );
        let all = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all, "two mount points share a file name");
    }
}
