//! What a devnet keeps in its directory, and so what a resumed devnet finds there and what
//! `--fresh` deletes.

use std::path::{Path, PathBuf};

use super::{DevnetError, DevnetInfo, dir_err};

pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        Layout {
            dir: dir.to_path_buf(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Addresses, URLs and token ids: a devnet is resumed from it.
    pub fn info(&self) -> PathBuf {
        self.dir.join("devnet.json")
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join("pxfs.toml")
    }

    pub fn env_file(&self) -> PathBuf {
        self.dir.join("devnet.env")
    }

    /// The devnet's random passphrase (mode 0600), which also opens the minted sNFT's data
    /// key: `[keys] passphrase_file` of its config, for mounts without the wallet key.
    pub fn passphrase(&self) -> PathBuf {
        self.dir.join("passphrase")
    }

    /// Written first by a new devnet: the directory is a devnet's, even before `devnet.json`.
    pub fn marker(&self) -> PathBuf {
        self.dir.join(".pxfs-devnet")
    }

    /// The node's repository (blocks, pins, keys, BTNS records), unless `--node-repo`.
    pub fn node(&self) -> PathBuf {
        self.dir.join("node")
    }

    /// The mount's cache: staged files, journal, chunk cache.
    pub fn cache(&self) -> PathBuf {
        self.dir.join("cache")
    }

    pub fn journal(&self) -> PathBuf {
        self.cache().join("journal")
    }

    pub fn chain(&self) -> PathBuf {
        self.dir.join("chain")
    }

    /// Anvil's state (accounts, contracts, storage, the blocks of the last run).
    pub fn chain_state(&self) -> PathBuf {
        self.chain().join("state.json")
    }

    pub fn oracle_state(&self) -> PathBuf {
        self.dir.join("oracle-state.json")
    }

    /// The mount daemon's output.
    pub fn mount_log(&self) -> PathBuf {
        self.dir.join("mount.log")
    }

    /// The devnet's entries that exist: what `--fresh` deletes.
    pub fn existing(&self) -> Vec<PathBuf> {
        [
            self.chain(),
            self.node(),
            self.cache(),
            self.oracle_state(),
            self.info(),
            self.config(),
            self.env_file(),
            self.mount_log(),
            self.marker(),
        ]
        .into_iter()
        .filter(|p| p.symlink_metadata().is_ok())
        .collect()
    }

    pub fn delete(&self, paths: &[PathBuf]) -> Result<(), DevnetError> {
        for p in paths {
            let meta = match p.symlink_metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(dir_err(p)(e)),
            };
            if meta.is_dir() {
                std::fs::remove_dir_all(p).map_err(dir_err(p))?;
            } else {
                std::fs::remove_file(p).map_err(dir_err(p))?;
            }
        }
        Ok(())
    }

    /// Holds `DIR/.lock` for as long as the returned file is open: one devnet per
    /// directory (two would share a chain state file, a node repository and a journal).
    pub fn lock(&self) -> Result<std::fs::File, DevnetError> {
        use std::os::fd::AsRawFd;
        let path = self.dir.join(".lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(dir_err(&path))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(DevnetError::Busy(self.dir.clone()));
        }
        Ok(file)
    }

    /// The devnet recorded here, if any.
    pub fn read_info(&self) -> Option<Result<DevnetInfo, String>> {
        let path = self.info();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => return Some(Err(format!("{}: {e}", path.display()))),
        };
        Some(serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display())))
    }

    pub fn write_info(&self, info: &DevnetInfo) -> Result<(), DevnetError> {
        let json = serde_json::to_string_pretty(info).expect("devnet info serializes");
        let path = self.info();
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, json).map_err(dir_err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(dir_err(&path))
    }
}
