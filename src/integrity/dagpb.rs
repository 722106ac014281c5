//! The dag-pb / UnixFS file nodes of a content DAG (Kubo's balanced layout with raw
//! leaves, docs/FORMAT.md §1.1): just enough protobuf to read their links, inline data and
//! declared sizes. Pure decoding; the bytes must have been checked against their CID.

use bytes::Bytes;
use ipld_core::cid::Cid;

/// The parts of a dag-pb UnixFS file node that reading and measuring need.
#[derive(Debug, Clone)]
pub struct FileNode {
    pub links: Vec<Cid>,
    /// Inline file bytes (a leaf node written without raw leaves).
    pub data: Bytes,
    pub data_len: u64,
    pub filesize: Option<u64>,
    /// The file bytes under each link, in order.
    pub blocksizes: Vec<u64>,
}

impl FileNode {
    /// Decodes a dag-pb node holding a UnixFS file (or raw) node.
    pub fn decode(block: &Bytes) -> Result<FileNode, &'static str> {
        let mut links = Vec::new();
        let mut unixfs: &[u8] = &[];
        for field in protobuf::fields(block) {
            match field? {
                (1, protobuf::Value::Bytes(b)) => unixfs = b,
                (2, protobuf::Value::Bytes(link)) => {
                    let mut hash = None;
                    for f in protobuf::fields(link) {
                        if let (1, protobuf::Value::Bytes(h)) = f? {
                            hash = Some(h);
                        }
                    }
                    let hash = hash.ok_or("a dag-pb link has no hash")?;
                    links.push(
                        Cid::try_from(hash).map_err(|_| "a dag-pb link's hash is not a CID")?,
                    );
                }
                _ => {}
            }
        }
        let mut kind = None;
        let mut data: &[u8] = &[];
        let mut filesize = None;
        let mut blocksizes = Vec::new();
        for field in protobuf::fields(unixfs) {
            match field? {
                (1, protobuf::Value::Varint(t)) => kind = Some(t),
                (2, protobuf::Value::Bytes(d)) => data = d,
                (3, protobuf::Value::Varint(s)) => filesize = Some(s),
                (4, protobuf::Value::Varint(s)) => blocksizes.push(s),
                (4, protobuf::Value::Bytes(packed)) => {
                    let mut pos = 0;
                    while pos < packed.len() {
                        blocksizes
                            .push(protobuf::varint(packed, &mut pos).ok_or("bad blocksizes")?);
                    }
                }
                _ => {}
            }
        }
        // UnixFS types: 0 raw, 2 file; anything else (a directory, a symlink) is not content.
        match kind {
            Some(0) | Some(2) => {}
            None => return Err("a dag-pb node without UnixFS data"),
            Some(_) => return Err("a dag-pb node that is not a UnixFS file"),
        }
        let data = block.slice_ref(data);
        Ok(FileNode {
            links,
            data_len: data.len() as u64,
            data,
            filesize,
            blocksizes,
        })
    }
}

/// Just enough protobuf to read dag-pb and UnixFS messages.
mod protobuf {
    pub enum Value<'a> {
        Varint(u64),
        Bytes(&'a [u8]),
    }

    pub fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *buf.get(*pos)?;
            *pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    /// The fields of one message: (field number, value); fixed-width fields are skipped.
    pub fn fields(buf: &[u8]) -> impl Iterator<Item = Result<(u64, Value<'_>), &'static str>> {
        let mut pos = 0usize;
        let mut failed = false;
        std::iter::from_fn(move || {
            if failed || pos >= buf.len() {
                return None;
            }
            let one = (|| {
                let key = varint(buf, &mut pos).ok_or("truncated protobuf key")?;
                let (number, wire) = (key >> 3, key & 7);
                let value = match wire {
                    0 => Value::Varint(varint(buf, &mut pos).ok_or("truncated varint")?),
                    1 | 5 => {
                        let width = if wire == 1 { 8 } else { 4 };
                        pos = pos
                            .checked_add(width)
                            .filter(|p| *p <= buf.len())
                            .ok_or("truncated field")?;
                        Value::Varint(0)
                    }
                    2 => {
                        let len = varint(buf, &mut pos).ok_or("truncated length")?;
                        let end = usize::try_from(len)
                            .ok()
                            .and_then(|l| pos.checked_add(l))
                            .filter(|e| *e <= buf.len())
                            .ok_or("truncated bytes field")?;
                        let bytes = &buf[pos..end];
                        pos = end;
                        Value::Bytes(bytes)
                    }
                    _ => return Err("unsupported protobuf wire type"),
                };
                Ok((number, value))
            })();
            failed = one.is_err();
            Some(one)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_unixfs_file_node_with_links_and_blocksizes() {
        // PBNode { Links: [PBLink { Hash: <raw cid>, Tsize: 3 }], Data: UnixFS { Type: File,
        // filesize: 3, blocksizes: [3] } }
        let leaf: Cid = "bafkreif2pall7dybz7vecqka3zo24irdwabwdi4wc55jznaq75q7eaavvu"
            .parse()
            .unwrap();
        let hash = leaf.to_bytes();
        let mut link = vec![0x0a, hash.len() as u8];
        link.extend(&hash);
        link.extend([0x18, 3]);
        let unixfs = [0x08, 2, 0x18, 3, 0x20, 3];
        let mut block = vec![0x12, link.len() as u8];
        block.extend(&link);
        block.extend([0x0a, unixfs.len() as u8]);
        block.extend(unixfs);
        let node = FileNode::decode(&Bytes::from(block)).unwrap();
        assert_eq!(node.links, vec![leaf]);
        assert_eq!(node.filesize, Some(3));
        assert_eq!(node.blocksizes, vec![3]);
        assert_eq!(node.data_len, 0);
    }

    #[test]
    fn a_directory_node_is_not_content_and_garbage_is_an_error() {
        let dir = Bytes::from_static(&[0x0a, 2, 0x08, 1]);
        assert!(FileNode::decode(&dir).is_err());
        assert!(FileNode::decode(&Bytes::from_static(&[0x12, 0x7f, 1])).is_err());
    }
}
