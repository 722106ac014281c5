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
    /// Bytes of the block that are neither the DAG's structure (link hashes and sizes, the
    /// UnixFS type and sizes) nor its inline data: link names, unknown or repeated fields.
    /// A writer could store anything there, so measuring counts them (0 for what Kubo's
    /// importer writes).
    pub extra: u64,
}

impl FileNode {
    /// Decodes a dag-pb node holding a UnixFS file (or raw) node.
    pub fn decode(block: &Bytes) -> Result<FileNode, &'static str> {
        let mut links = Vec::new();
        let mut unixfs: Option<&[u8]> = None;
        let mut extra = 0u64;
        for field in protobuf::fields(block) {
            let (number, value, span) = field?;
            match (number, value) {
                (1, protobuf::Value::Bytes(b)) if unixfs.is_none() => unixfs = Some(b),
                (2, protobuf::Value::Bytes(link)) => {
                    let mut hash = None;
                    for f in protobuf::fields(link) {
                        match f? {
                            (1, protobuf::Value::Bytes(h), span) => {
                                if hash.is_some() {
                                    extra += span as u64;
                                }
                                hash = Some(h);
                            }
                            // Name: its bytes are the writer's to choose.
                            (2, protobuf::Value::Bytes(name), _) => extra += name.len() as u64,
                            (3, protobuf::Value::Varint(_), _) => {}
                            (_, _, span) => extra += span as u64,
                        }
                    }
                    let hash = hash.ok_or("a dag-pb link has no hash")?;
                    links.push(
                        Cid::try_from(hash).map_err(|_| "a dag-pb link's hash is not a CID")?,
                    );
                }
                _ => extra += span as u64,
            }
        }
        let unixfs = unixfs.unwrap_or_default();
        let mut kind = None;
        let mut data: Option<&[u8]> = None;
        let mut filesize = None;
        let mut blocksizes = Vec::new();
        for field in protobuf::fields(unixfs) {
            match field? {
                (1, protobuf::Value::Varint(t), _) if kind.is_none() => kind = Some(t),
                (2, protobuf::Value::Bytes(d), _) if data.is_none() => data = Some(d),
                (3, protobuf::Value::Varint(s), _) if filesize.is_none() => filesize = Some(s),
                (4, protobuf::Value::Varint(s), _) => blocksizes.push(s),
                (4, protobuf::Value::Bytes(packed), _) => {
                    let mut pos = 0;
                    while pos < packed.len() {
                        blocksizes
                            .push(protobuf::varint(packed, &mut pos).ok_or("bad blocksizes")?);
                    }
                }
                (_, _, span) => extra += span as u64,
            }
        }
        let data = data.unwrap_or_default();
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
            extra,
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

    /// The fields of one message: (field number, value, bytes the field takes, key
    /// included); fixed-width fields read as `Varint(0)`.
    pub fn fields(
        buf: &[u8],
    ) -> impl Iterator<Item = Result<(u64, Value<'_>, usize), &'static str>> {
        let mut pos = 0usize;
        let mut failed = false;
        std::iter::from_fn(move || {
            if failed || pos >= buf.len() {
                return None;
            }
            let start = pos;
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
                Ok((number, value, pos - start))
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
    fn link_names_and_unknown_fields_are_extra_bytes_the_structure_is_not() {
        let leaf: Cid = "bafkreif2pall7dybz7vecqka3zo24irdwabwdi4wc55jznaq75q7eaavvu"
            .parse()
            .unwrap();
        let hash = leaf.to_bytes();
        let node = |name: &[u8], unknown: &[u8]| {
            let mut link = vec![0x0a, hash.len() as u8];
            link.extend(&hash);
            link.extend([0x12, name.len() as u8]);
            link.extend(name);
            link.extend([0x18, 3]);
            let mut unixfs = vec![0x08, 2, 0x18, 3, 0x20, 3];
            if !unknown.is_empty() {
                // UnixFS field 9 (not a file's), bytes.
                unixfs.extend([0x4a, unknown.len() as u8]);
                unixfs.extend(unknown);
            }
            let mut block = vec![0x12, link.len() as u8];
            block.extend(&link);
            block.extend([0x0a, unixfs.len() as u8]);
            block.extend(unixfs);
            // An unknown dag-pb field 5 at the end.
            if !unknown.is_empty() {
                block.extend([0x2a, unknown.len() as u8]);
                block.extend(unknown);
            }
            FileNode::decode(&Bytes::from(block)).unwrap()
        };
        assert_eq!(node(b"", b"").extra, 0, "what the importer writes");
        assert_eq!(node(b"secret name", b"").extra, 11);
        assert_eq!(node(b"", &[7u8; 100]).extra, 2 * (2 + 100));
    }

    #[test]
    fn a_directory_node_is_not_content_and_garbage_is_an_error() {
        let dir = Bytes::from_static(&[0x0a, 2, 0x08, 1]);
        assert!(FileNode::decode(&dir).is_err());
        assert!(FileNode::decode(&Bytes::from_static(&[0x12, 0x7f, 1])).is_err());
    }
}
