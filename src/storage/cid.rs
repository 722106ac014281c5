//! CIDs as values: a node may write the same CID in another base (base58btc `zb2rh…`,
//! base36 `k…`) than Kubo and BTFS (base32 `bafk…`). Every CID a node returns is parsed
//! into the `cid` crate's type and stored in one canonical text form (CIDv1 in base32
//! lower case, CIDv0 as its only form), so that two texts of one CID compare equal and
//! a CID that differs in substance (codec, hash, version) still differs.

/// The canonical text of `text`, a CID in any multibase; an error naming it otherwise.
pub fn canonical(text: &str) -> Result<String, String> {
    let trimmed = text.trim();
    let cid = cid::Cid::try_from(trimmed)
        .map_err(|e| format!("the node answered {trimmed:?} where a CID was expected: {e}"))?;
    // `Display` writes CIDv1 in base32 lower case and CIDv0 in base58btc.
    Ok(cid.to_string())
}

/// The key a BTNS/IPNS name stands for, from any of its texts: a CIDv1 of codec
/// libp2p-key in any multibase (`k51…`, `bafz…`), or a peer id in plain base58btc
/// (`12D3Koo…`, `Qm…`, BTFS's `16Uiu2…`), with or without `/ipns/` or `/btns/` before it.
fn name_key(text: &str) -> Option<cid::multihash::Multihash<64>> {
    let text = text.trim();
    let text = text
        .strip_prefix("/ipns/")
        .or_else(|| text.strip_prefix("/btns/"))
        .unwrap_or(text);
    if let Ok(cid) = cid::Cid::try_from(text) {
        return (cid.codec() == LIBP2P_KEY).then_some(*cid.hash());
    }
    let (_, bytes) = cid::multibase::decode(format!("z{text}")).ok()?;
    cid::multihash::Multihash::from_bytes(&bytes).ok()
}

/// The multicodec of a public key's hash, which IPNS names are.
const LIBP2P_KEY: u64 = 0x72;

/// Multicodecs of the blocks `block/put` stores (the integrity layer reads them).
const DAG_PB: u64 = 0x70;
const SHA2_256: u64 = 0x12;

/// The `cid-codec` name `block/put` takes for `cid`'s codec: dag-pb or raw.
pub fn codec_name(cid: &cid::Cid) -> &'static str {
    if cid.codec() == DAG_PB {
        "dag-pb"
    } else {
        "raw"
    }
}

/// Whether `data` is the block `cid` names (SHA2-256, what pxfs and Kubo write). The
/// storage layer's own guard before it stores a block elsewhere; readers check blocks
/// through `crate::integrity`, which also counts and logs a mismatch.
pub fn names_block(cid: &cid::Cid, data: &[u8]) -> bool {
    use sha2::Digest;
    cid.hash().code() == SHA2_256 && sha2::Sha256::digest(data).as_slice() == cid.hash().digest()
}

/// Whether two texts name the same BTNS/IPNS key (see [`name_key`] for the forms): a node
/// may list its keys in another form than the one recorded on chain.
pub fn same_name(a: &str, b: &str) -> bool {
    match (name_key(a), name_key(b)) {
        (Some(a), Some(b)) => a == b,
        _ => a.trim() == b.trim(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_in_any_form_is_the_same_name() {
        use cid::multibase::Base;
        // An ed25519 public key's identity multihash, as IPNS names are.
        let name = |byte: u8| {
            let mut key = vec![0x08, 0x01, 0x12, 0x20];
            key.extend([byte; 32]);
            let hash = cid::multihash::Multihash::<64>::wrap(0x00, &key).unwrap();
            cid::Cid::new_v1(LIBP2P_KEY, hash)
        };
        let cid = name(7);
        let key = cid.to_string_of_base(Base::Base36Lower).unwrap();
        let peer_id = cid::multibase::encode(Base::Base58Btc, cid.hash().to_bytes());
        let peer_id = peer_id.trim_start_matches('z');
        assert!(peer_id.starts_with("12D3Koo"), "{peer_id}");
        let b32 = cid.to_string_of_base(Base::Base32Lower).unwrap();
        for other in [
            peer_id.to_string(),
            format!("/ipns/{peer_id}"),
            b32,
            format!("/btns/{key}"),
        ] {
            assert!(same_name(&key, &other), "{other}");
        }
        let another = name(8).to_string_of_base(Base::Base36Lower).unwrap();
        assert!(!same_name(&key, &another));
    }

    const B32: &str = "bafkreigks6arfsq3xxfpvqrrwonchxcnu6do76auprhhfomao6c273sixm";

    #[test]
    fn one_cid_in_three_bases_has_one_canonical_text() {
        let cid = cid::Cid::try_from(B32).unwrap();
        let b58 = cid
            .to_string_of_base(cid::multibase::Base::Base58Btc)
            .unwrap();
        let b36 = cid
            .to_string_of_base(cid::multibase::Base::Base36Lower)
            .unwrap();
        assert!(b58.starts_with('z') && b36.starts_with('k'));
        assert_eq!(canonical(&b58).unwrap(), B32);
        assert_eq!(canonical(&b36).unwrap(), B32);
        assert_eq!(canonical(B32).unwrap(), B32);
    }

    #[test]
    fn a_cid_of_another_codec_stays_different() {
        let cid = cid::Cid::try_from(B32).unwrap();
        let dag_pb = cid::Cid::new_v1(0x70, *cid.hash());
        assert_ne!(canonical(&dag_pb.to_string()).unwrap(), B32);
    }

    #[test]
    fn text_that_is_no_cid_is_a_clear_error() {
        let e = canonical("not-a-cid").unwrap_err();
        assert!(e.contains("\"not-a-cid\""), "{e}");
    }
}
