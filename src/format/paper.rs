//! The paper backup of a data key (FORMAT.md §6.4, `pxfs key export`):
//! `pxfs-key-2 <chain>:<contract>:<token> <DK in 8 groups of 8 hex digits> <key id>`.
//! The key id at the end catches typing mistakes when the line is typed back in.

use zeroize::Zeroizing;

use super::keys::{DataKey, KeyId};
use super::{FormatError, Result};

const MAGIC: &str = "pxfs-key-2";

/// A parsed paper backup: which token it is for, and the key.
#[derive(Debug)]
pub struct PaperKey {
    pub chain_id: u64,
    /// As written in the backup (EIP-55 checksummed by the exporter).
    pub contract: String,
    pub token_id: u64,
    pub data_key: DataKey,
}

impl PaperKey {
    /// Whether the backup is for this token (contract compared case-insensitively).
    pub fn is_for(&self, chain_id: u64, contract: &str, token_id: u64) -> bool {
        self.chain_id == chain_id
            && self.token_id == token_id
            && self.contract.eq_ignore_ascii_case(contract)
    }
}

/// The one-line export. Holds the key in clear: the caller shows it to the owner and
/// writes it nowhere else.
pub fn export(chain_id: u64, contract: &str, token_id: u64, dk: &DataKey) -> Zeroizing<String> {
    let hex = Zeroizing::new(hex::encode(dk.expose()));
    let mut out = Zeroizing::new(format!("{MAGIC} {chain_id}:{contract}:{token_id}"));
    for group in hex.as_bytes().chunks(8) {
        out.push(' ');
        out.push_str(std::str::from_utf8(group).expect("hex is ASCII"));
    }
    out.push(' ');
    out.push_str(&dk.key_id().to_string());
    out
}

/// Parses a backup as typed back: any whitespace between fields, hex in either case.
/// Refuses a line whose key does not have the key id written after it.
pub fn parse(text: &str) -> Result<PaperKey> {
    let bad = |why: &str| FormatError::invalid(format!("not a pxfs key backup: {why}"));
    let fields: Vec<&str> = text.split_whitespace().collect();
    if fields.first() != Some(&MAGIC) {
        return Err(bad("it does not start with pxfs-key-2"));
    }
    if fields.len() != 11 {
        return Err(bad(
            "expected the token, 8 groups of 8 hex digits and the key id",
        ));
    }
    let token: Vec<&str> = fields[1].split(':').collect();
    let [chain, contract, token_id] = token[..] else {
        return Err(bad("the token is not <chain>:<contract>:<token>"));
    };
    let chain_id = chain
        .parse()
        .map_err(|_| bad("the chain id is not a number"))?;
    let token_id = token_id
        .parse()
        .map_err(|_| bad("the token id is not a number"))?;
    if fields[2..10].iter().any(|g| g.len() != 8) {
        return Err(bad("the key is not 8 groups of 8 hex digits"));
    }
    let hex = Zeroizing::new(fields[2..10].concat().to_ascii_lowercase());
    let mut key = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(hex.as_bytes(), key.as_mut()).map_err(|_| bad("the key is not hex"))?;
    let data_key = DataKey::from_bytes(*key);
    let written = KeyId::parse(&fields[10].to_ascii_lowercase())?;
    if data_key.key_id() != written {
        return Err(FormatError::WrongKey(
            "the key does not match the key id after it: check the digits for a typing mistake"
                .into(),
        ));
    }
    Ok(PaperKey {
        chain_id,
        contract: contract.to_owned(),
        token_id,
        data_key,
    })
}
