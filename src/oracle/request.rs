//! The parameters of a pxfs sync request, as ChainlinkClient encodes them: a CBOR map body
//! (`btnsKey` text, `tokenId` integer) without its map header.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestParams {
    pub btns_key: String,
    pub token_id: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RequestParamsError {
    #[error("request parameters are not valid CBOR: {0}")]
    Cbor(String),
    #[error("request parameter `{0}` is missing or has the wrong type")]
    Missing(&'static str),
}

impl RequestParams {
    pub fn decode(data: &[u8]) -> Result<RequestParams, RequestParamsError> {
        // Chainlink nodes read the buffer as the body of an indefinite-length map.
        let mut framed = Vec::with_capacity(data.len() + 2);
        framed.push(0xbf);
        framed.extend_from_slice(data);
        framed.push(0xff);
        let value: ciborium::Value = ciborium::from_reader(framed.as_slice())
            .map_err(|e| RequestParamsError::Cbor(e.to_string()))?;
        let map = value
            .into_map()
            .map_err(|_| RequestParamsError::Cbor("not a map".into()))?;
        let mut btns_key = None;
        let mut token_id = None;
        for (k, v) in map {
            match k.as_text() {
                Some("btnsKey") => btns_key = v.into_text().ok(),
                Some("tokenId") => {
                    token_id = v
                        .as_integer()
                        .and_then(|i| u64::try_from(i128::from(i)).ok())
                }
                _ => {}
            }
        }
        Ok(RequestParams {
            btns_key: btns_key
                .filter(|k| !k.is_empty())
                .ok_or(RequestParamsError::Missing("btnsKey"))?,
            token_id: token_id.ok_or(RequestParamsError::Missing("tokenId"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_body_chainlink_client_builds() {
        // "btnsKey" => "k51abc", "tokenId" => 7, as BufferChainlink writes them.
        let mut data = vec![0x67];
        data.extend_from_slice(b"btnsKey");
        data.push(0x66);
        data.extend_from_slice(b"k51abc");
        data.push(0x67);
        data.extend_from_slice(b"tokenId");
        data.push(0x07);
        let p = RequestParams::decode(&data).unwrap();
        assert_eq!(
            p,
            RequestParams {
                btns_key: "k51abc".into(),
                token_id: 7
            }
        );
    }

    #[test]
    fn a_request_without_a_key_is_refused() {
        let mut data = vec![0x67];
        data.extend_from_slice(b"tokenId");
        data.push(0x01);
        let err = RequestParams::decode(&data).unwrap_err();
        assert!(err.to_string().contains("btnsKey"), "{err}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(RequestParams::decode(&[0xff, 0x00, 0x13]).is_err());
    }
}
