//! The signing key: `PXFS_PRIVATE_KEY` from the environment, or the config's encrypted
//! JSON keystore unlocked with `PXFS_KEYSTORE_PASSWORD`. Never from argv, never logged.

use alloy::signers::local::PrivateKeySigner;

use super::ChainError;
use crate::config::ChainConfig;

pub const PRIVATE_KEY_ENV: &str = "PXFS_PRIVATE_KEY";
pub const KEYSTORE_PASSWORD_ENV: &str = "PXFS_KEYSTORE_PASSWORD";
pub const ORACLE_KEY_ENV: &str = "PXFS_ORACLE_KEY";

/// A signer from a hex private key.
pub fn parse(key: &str) -> Result<PrivateKeySigner, ChainError> {
    key.trim()
        .parse::<PrivateKeySigner>()
        .map_err(|_| ChainError::BadPrivateKey)
}

/// The oracle node's signer, from `PXFS_ORACLE_KEY`.
pub fn load_oracle() -> Result<PrivateKeySigner, ChainError> {
    match std::env::var(ORACLE_KEY_ENV) {
        Ok(key) if !key.trim().is_empty() => parse(&key),
        _ => Err(ChainError::NoOracleSigner),
    }
}

/// The signer for `cfg`: the environment key wins over the keystore, so a one-off command
/// can sign with another key without editing the config.
pub fn load(cfg: &ChainConfig) -> Result<PrivateKeySigner, ChainError> {
    if let Ok(key) = std::env::var(PRIVATE_KEY_ENV)
        && !key.trim().is_empty()
    {
        return parse(&key);
    }
    let Some(path) = &cfg.keystore else {
        return Err(ChainError::NoSigner);
    };
    let password = std::env::var(KEYSTORE_PASSWORD_ENV).map_err(|_| ChainError::Keystore {
        path: path.display().to_string(),
        reason: format!("{KEYSTORE_PASSWORD_ENV} is not set"),
    })?;
    PrivateKeySigner::decrypt_keystore(path, password).map_err(|e| ChainError::Keystore {
        path: path.display().to_string(),
        // eth-keystore (not a direct dependency) reports a wrong password as a MAC mismatch.
        reason: match e.to_string() {
            m if m.contains("Mac Mismatch") => {
                format!("the password in {KEYSTORE_PASSWORD_ENV} is wrong")
            }
            m => m,
        },
    })
}
