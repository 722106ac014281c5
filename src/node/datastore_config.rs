//! The node's storage limits, read from `REPO/config` as Kubo keeps them:
//!
//! ```json
//! {"Datastore": {"StorageMax": "10GB", "StorageGCWatermark": 90, "GCPeriod": "1h"}}
//! ```
//!
//! A missing file, section or key takes Kubo's default; a value that is there but malformed
//! stops the node at start with a message naming the key, so a typo never silently means
//! "collect nothing" or "collect everything". Other keys of a Kubo config are ignored.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::http::parse_go_duration;

/// Kubo's `Datastore.StorageMax` default: 10 GB.
pub const DEFAULT_STORAGE_MAX: u64 = 10_000_000_000;
/// Kubo's `Datastore.StorageGCWatermark` default, in percent of `StorageMax`.
pub const DEFAULT_WATERMARK: u64 = 90;
/// Kubo's `Datastore.GCPeriod` default.
pub const DEFAULT_GC_PERIOD: Duration = Duration::from_secs(3600);

/// The config file in a repo.
pub fn config_file(repo: &Path) -> PathBuf {
    repo.join("config")
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: Datastore.{key} = {value}: {expected}")]
    Value {
        path: PathBuf,
        key: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// When the collector runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageLimits {
    /// Bytes of blocks the repo should hold at most.
    pub storage_max: u64,
    /// Percent of `storage_max` past which a collection runs.
    pub watermark: u64,
    /// How often the size is checked; zero turns the periodic check off, as in Kubo.
    pub gc_period: Duration,
}

impl Default for StorageLimits {
    fn default() -> Self {
        StorageLimits {
            storage_max: DEFAULT_STORAGE_MAX,
            watermark: DEFAULT_WATERMARK,
            gc_period: DEFAULT_GC_PERIOD,
        }
    }
}

impl StorageLimits {
    /// The repo size past which a collection runs (Kubo's `StorageGC`).
    pub fn threshold(&self) -> u64 {
        (u128::from(self.storage_max) * u128::from(self.watermark) / 100) as u64
    }

    /// Reads `REPO/config`; a missing file means Kubo's defaults.
    pub fn load(repo: &Path) -> Result<Self, ConfigError> {
        let path = config_file(repo);
        match std::fs::read(&path) {
            Ok(bytes) => Self::parse(&path, &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }

    fn parse(path: &Path, bytes: &[u8]) -> Result<Self, ConfigError> {
        let config: Value = serde_json::from_slice(bytes).map_err(|source| ConfigError::Json {
            path: path.to_owned(),
            source,
        })?;
        let mut limits = Self::default();
        let Some(datastore) = config.get("Datastore") else {
            return Ok(limits);
        };
        let bad = |key: &'static str, value: &Value, expected: &'static str| ConfigError::Value {
            path: path.to_owned(),
            key,
            value: value.to_string(),
            expected,
        };
        if let Some(value) = datastore.get("StorageMax") {
            const EXPECTED: &str = "expected a size such as \"10GB\" or \"512MiB\"";
            limits.storage_max = value
                .as_str()
                .and_then(parse_bytes)
                .ok_or_else(|| bad("StorageMax", value, EXPECTED))?;
        }
        if let Some(value) = datastore.get("StorageGCWatermark") {
            const EXPECTED: &str = "expected a whole percentage from 0 to 100";
            limits.watermark = value
                .as_u64()
                .filter(|percent| *percent <= 100)
                .ok_or_else(|| bad("StorageGCWatermark", value, EXPECTED))?;
        }
        if let Some(value) = datastore.get("GCPeriod") {
            const EXPECTED: &str = "expected a duration such as \"1h\" or \"90s\"";
            limits.gc_period = match value.as_str() {
                // Kubo treats an empty period as its default.
                Some("") => Some(DEFAULT_GC_PERIOD),
                Some(text) => parse_go_duration(text),
                None => None,
            }
            .ok_or_else(|| bad("GCPeriod", value, EXPECTED))?;
        }
        Ok(limits)
    }
}

/// Parses a size as Kubo does (go-humanize `ParseBytes`): a number, optional spaces and a
/// unit, where `kB`/`MB`/`GB`… are powers of 1000 and `KiB`/`MiB`/`GiB`… powers of 1024.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "ki" | "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mi" | "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gi" | "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "ti" | "tib" => 1 << 40,
        "p" | "pb" => 1_000_000_000_000_000,
        "pi" | "pib" => 1 << 50,
        _ => return None,
    };
    let bytes = number * multiplier as f64;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<StorageLimits, ConfigError> {
        StorageLimits::parse(Path::new("/r/config"), json.as_bytes())
    }

    #[test]
    fn sizes_parse_like_go_humanize() {
        assert_eq!(parse_bytes("10GB"), Some(10_000_000_000));
        assert_eq!(parse_bytes("512MiB"), Some(512 << 20));
        assert_eq!(parse_bytes("1.5 kB"), Some(1500));
        assert_eq!(parse_bytes("42"), Some(42));
        assert_eq!(parse_bytes("ten GB"), None);
        assert_eq!(parse_bytes("10XB"), None);
        assert_eq!(parse_bytes(""), None);
    }

    #[test]
    fn missing_keys_take_kubo_defaults_and_present_ones_override() {
        assert_eq!(parse("{}").unwrap(), StorageLimits::default());
        let limits =
            parse(r#"{"Datastore":{"StorageMax":"1MB","StorageGCWatermark":50,"GCPeriod":"1s"}}"#)
                .unwrap();
        assert_eq!(limits.storage_max, 1_000_000);
        assert_eq!(limits.threshold(), 500_000);
        assert_eq!(limits.gc_period, Duration::from_secs(1));
        assert_eq!(StorageLimits::default().threshold(), 9_000_000_000);
    }

    #[test]
    fn a_malformed_value_names_its_key() {
        let e = parse(r#"{"Datastore":{"StorageGCWatermark":"ninety"}}"#).unwrap_err();
        assert!(e.to_string().contains("StorageGCWatermark"), "{e}");
        let e = parse(r#"{"Datastore":{"StorageMax":10}}"#).unwrap_err();
        assert!(e.to_string().contains("StorageMax"), "{e}");
        let e = parse(r#"{"Datastore":{"GCPeriod":"soon"}}"#).unwrap_err();
        assert!(e.to_string().contains("GCPeriod"), "{e}");
        assert!(parse("{not json").is_err());
    }
}
