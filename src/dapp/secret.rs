//! Where `pxfs key import-dapp` keeps the dApp secrets for the mount: one file per sNFT,
//! mode 0600, in `CACHE/dapp/` (mode 0700), named after the chain, contract and token.
//! The secret never goes into argv, logs or the config file.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{DappError, DappSecret};
use crate::chain::TokenId;

/// The secrets of one config's chain and contract.
#[derive(Debug, Clone)]
pub struct SecretStore {
    dir: PathBuf,
    prefix: String,
}

impl SecretStore {
    pub fn new(cache_dir: &Path, chain_id: u64, contract: &str) -> SecretStore {
        SecretStore {
            dir: cache_dir.join("dapp"),
            prefix: format!("{chain_id}-{}", contract.to_ascii_lowercase()),
        }
    }

    pub fn path(&self, token: TokenId) -> PathBuf {
        self.dir.join(format!("{}-{token}.secret", self.prefix))
    }

    /// Store `secret` for `token` (replacing one stored before), never readable by others.
    pub fn store(&self, token: TokenId, secret: &DappSecret) -> Result<PathBuf, DappError> {
        let path = self.path(token);
        let file_err = |source| DappError::File {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(file_err)?;
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
            .map_err(file_err)?;
        let tmp = path.with_extension("secret.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(file_err)?;
        f.write_all(secret.text().as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(file_err)?;
        std::fs::rename(&tmp, &path).map_err(file_err)?;
        Ok(path)
    }

    /// The secret stored for `token`, if any.
    pub fn load(&self, token: TokenId) -> Result<Option<DappSecret>, DappError> {
        let path = self.path(token);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let text = zeroize::Zeroizing::new(text);
                DappSecret::parse(&text).map(Some)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(DappError::File { path, source }),
        }
    }

    /// Remove `token`'s secret; whether there was one.
    pub fn forget(&self, token: TokenId) -> Result<bool, DappError> {
        let path = self.path(token);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(DappError::File { path, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_secret_is_private_and_can_be_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = SecretStore::new(dir.path(), 31337, "0xABC");
        let secret = DappSecret::parse(&"ab".repeat(32)).unwrap();
        assert!(store.load(5).unwrap().is_none());
        let path = store.store(5, &secret).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert!(path.ends_with("dapp/31337-0xabc-5.secret"));
        assert_eq!(store.load(5).unwrap().unwrap().text(), secret.text());
        assert!(store.forget(5).unwrap());
        assert!(!store.forget(5).unwrap());
        assert!(store.load(5).unwrap().is_none());
    }
}
