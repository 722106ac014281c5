//! Where pages live: the caller's object store (the node at integration time), seen as
//! "bytes by CID" and "bytes → CID". [`MemStore`] is an in-memory one for tests and
//! measurements; its CIDs are CIDv1 `raw` SHA-256 (what a node gives an object of at most
//! 262,144 bytes).

use std::collections::HashMap;

use data_encoding::BASE32_NOPAD;
use sha2::{Digest, Sha256};

use super::{FormatError, Result};

pub trait PageStore {
    fn get(&self, cid: &str) -> Result<Vec<u8>>;
    fn put(&mut self, bytes: Vec<u8>) -> Result<String>;
}

/// Objects in memory, with a count of what was put (for measuring commits).
#[derive(Debug, Default)]
pub struct MemStore {
    objects: HashMap<String, Vec<u8>>,
    /// Objects and bytes put since the last [`MemStore::reset_counts`].
    pub puts: u64,
    pub put_bytes: u64,
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore::default()
    }

    pub fn reset_counts(&mut self) {
        self.puts = 0;
        self.put_bytes = 0;
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Replaces an object's bytes in place (a node tampering with what it stores).
    pub fn tamper(&mut self, cid: &str, bytes: Vec<u8>) {
        self.objects.insert(cid.to_owned(), bytes);
    }
}

/// The CIDv1 (`raw`, SHA2-256) of `bytes` in base32: `bafkrei…`.
pub fn raw_cid(bytes: &[u8]) -> String {
    let mut bin = vec![0x01, 0x55, 0x12, 0x20];
    bin.extend_from_slice(&Sha256::digest(bytes));
    format!("b{}", BASE32_NOPAD.encode(&bin).to_ascii_lowercase())
}

impl PageStore for MemStore {
    fn get(&self, cid: &str) -> Result<Vec<u8>> {
        self.objects
            .get(cid)
            .cloned()
            .ok_or_else(|| FormatError::Store(format!("{cid} not found")))
    }

    fn put(&mut self, bytes: Vec<u8>) -> Result<String> {
        let cid = raw_cid(&bytes);
        self.puts += 1;
        self.put_bytes += bytes.len() as u64;
        self.objects.insert(cid.clone(), bytes);
        Ok(cid)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn raw_cids_look_like_the_nodes() {
        // `ipfs add --cid-version=1 --raw-leaves` of an empty file.
        assert_eq!(
            super::raw_cid(b""),
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        );
    }
}
