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

#[cfg(test)]
mod tests {
    use super::*;

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
