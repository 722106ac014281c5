use super::*;
use crate::format::page::{self, Page};
use crate::format::store::{MemStore, raw_cid};
use crate::format::{DataKey, TreeCrypto};

fn keys() -> TreeKeys {
    TreeKeys::derive(&DataKey::from_bytes(std::array::from_fn(|i| i as u8)))
}

fn sealed_crypto() -> TreeCrypto {
    TreeCrypto::sealed(&DataKey::from_bytes(std::array::from_fn(|i| i as u8)))
}

/// A stand-in chunk of an encrypted tree: its CID is that of some bytes, its salt random.
fn chunk(index: u64, version: u8) -> ChunkRef {
    let cid = raw_cid(&[&index.to_be_bytes()[..], &[version]].concat());
    ChunkRef::new(index, cid, Some(ContentSalt::random()))
}

#[test]
fn a_file_is_cut_into_128_kib_chunks_the_last_one_short() {
    assert_eq!(chunk_count(0), 0);
    assert_eq!(chunk_count(1), 1);
    assert_eq!(chunk_count(CHUNK), 1);
    assert_eq!(chunk_count(CHUNK + 1), 2);
    assert_eq!(chunk_len(CHUNK + 1, 0), Some(CHUNK));
    assert_eq!(chunk_len(CHUNK + 1, 1), Some(1));
    assert_eq!(chunk_len(CHUNK + 1, 2), None);
    assert_eq!(chunk_len(u64::MAX, u64::MAX), None);
    const { assert!(SEALED_CHUNK <= 262_144, "a sealed chunk is one raw block") };
}

#[test]
fn an_aligned_4_kib_write_touches_one_chunk_and_a_straddling_one_two() {
    for page in [0, 31, 32, 1_048_575] {
        assert_eq!(chunks_touched(page * 4096, 4096).count(), 1, "page {page}");
    }
    assert_eq!(chunks_touched(CHUNK - 1, 2), 0..2);
    assert_eq!(chunks_touched(5, 0), 0..0);
    assert_eq!(
        chunks_touched(u64::MAX - 1, 10).start,
        (u64::MAX - 1) / CHUNK
    );
}

#[test]
fn only_an_all_zero_chunk_is_a_hole() {
    assert!(is_hole(&[0; 4096]));
    let mut c = vec![0; 4096];
    c[4095] = 1;
    assert!(!is_hole(&c));
}

#[test]
fn a_sealed_chunk_opens_only_at_its_own_index_and_length() {
    let k = keys();
    let plain = vec![7u8; CHUNK as usize];
    let size = 3 * CHUNK;
    let (salt, sealed) = seal_chunk(&k, 1, &plain).unwrap();
    assert_eq!(sealed.len() as u64, SEALED_CHUNK);
    assert_eq!(open_chunk(&k, &salt, 1, size, &sealed).unwrap(), plain);
    // Moved to another position of the same (or another) file: refused.
    assert!(matches!(
        open_chunk(&k, &salt, 2, size, &sealed),
        Err(FormatError::Tampered(_))
    ));
    // A file whose size puts a short chunk here: refused by length.
    assert!(open_chunk(&k, &salt, 1, CHUNK + 10, &sealed).is_err());
    // Past the end of the file.
    assert!(open_chunk(&k, &salt, 3, size, &sealed).is_err());
    // Altered, or opened with another salt (another version's item): refused.
    let mut bad = sealed.clone();
    bad[100] ^= 1;
    assert!(open_chunk(&k, &salt, 1, size, &bad).is_err());
    assert!(open_chunk(&k, &ContentSalt([9; 32]), 1, size, &sealed).is_err());
}

#[test]
fn sealing_the_same_chunk_twice_uses_two_keys() {
    let k = keys();
    let (s1, c1) = seal_chunk(&k, 0, b"same").unwrap();
    let (s2, c2) = seal_chunk(&k, 0, b"same").unwrap();
    assert_ne!(s1, s2);
    assert_ne!(c1, c2);
    assert!(seal_chunk(&k, 0, b"").is_err());
    assert!(seal_chunk(&k, 0, &vec![1; CHUNK as usize + 1]).is_err());
}

#[test]
fn a_plaintext_chunk_must_have_the_length_of_its_place() {
    assert_eq!(
        open_plain_chunk(1, CHUNK + 3, vec![1, 2, 3]).unwrap(),
        [1, 2, 3]
    );
    assert!(open_plain_chunk(1, CHUNK + 3, vec![1, 2]).is_err());
    assert!(open_plain_chunk(2, CHUNK + 3, vec![1]).is_err());
}

#[test]
fn a_sparse_gigabyte_with_one_byte_is_a_table_of_one_chunk() {
    let mut store = MemStore::new();
    let crypto = sealed_crypto();
    let size = 1 << 30;
    let at = (512 << 20) / CHUNK;
    let top = build(&mut store, &crypto, vec![chunk(at, 0)]).unwrap();
    assert_eq!(store.len(), 1, "one leaf page, no object for any hole");
    let all = chunks(&mut store, &crypto, &top, size).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(
        lookup(&mut store, &crypto, &top, at).unwrap(),
        Some(all[0].clone())
    );
    assert_eq!(lookup(&mut store, &crypto, &top, at - 1).unwrap(), None);
    // The same table under a file too short for that chunk is refused.
    assert!(chunks(&mut store, &crypto, &top, at * CHUNK).is_err());
    // A file of holes only: the empty leaf.
    let empty = build(&mut store, &crypto, vec![]).unwrap();
    assert!(
        chunks(&mut store, &crypto, &empty, size)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn items_carry_a_salt_exactly_in_an_encrypted_tree() {
    let mut store = MemStore::new();
    let plain = ChunkRef::new(0, raw_cid(b"x"), None);
    let top = build(&mut store, &TreeCrypto::Plain, vec![plain.clone()]).unwrap();
    let bytes = store.get(&top).unwrap();
    assert_eq!(
        String::from_utf8(bytes.clone()).unwrap(),
        format!(
            "{{\"schema\":\"pxfs/chunks/3\",\"nodes\":[],\"data\":[\"{}\"],\"body\":{{\"type\":\"leaf\",\"entries\":[{{\"i\":0,\"content\":0}}]}}}}",
            plain.cid
        )
    );
    // A plaintext item in an encrypted table (or the reverse) is refused.
    let keyed = ChunkRef::new(0, raw_cid(b"x"), Some(ContentSalt([1; 32])));
    let forged = page::encode(&Page::Leaf(vec![keyed]), &TreeCrypto::Plain).unwrap();
    assert!(page::decode::<ChunkRef>(&forged, &TreeCrypto::Plain).is_err());
    assert!(page::decode::<ChunkRef>(&bytes, &sealed_crypto()).is_err());
}

/// The bound: a 4 KiB change to a 4 GiB file rewrites one chunk plus its table's
/// path. Measured here for the table (the directory leaf, root, history and usage document
/// come on top, FORMAT.md §13.4).
#[test]
fn a_4_kib_change_in_a_4_gib_file_rewrites_a_few_kib_of_table() {
    let mut store = MemStore::new();
    let crypto = sealed_crypto();
    let n = (4u64 << 30) / CHUNK;
    let top = build(&mut store, &crypto, (0..n).map(|i| chunk(i, 0)).collect()).unwrap();
    let stats = prolly::check::<ChunkRef>(&mut store, &crypto, &top).unwrap();
    assert_eq!(stats.records, n);
    let mut worst = 0;
    for i in [0, n / 3, n / 2, n - 1] {
        store.reset_counts();
        let up = update(
            &mut store,
            &crypto,
            &top,
            BTreeMap::from([(i, Some(chunk(i, 1)))]),
        )
        .unwrap();
        assert_ne!(up.top, top);
        assert!(store.puts <= stats.depth as u64, "one page per level");
        worst = worst.max(store.put_bytes);
    }
    assert!(worst < 40 * 1024, "table bytes per change: {worst}");
    // Two writes at both ends in one commit: the pages around each, not those between.
    store.reset_counts();
    let both = BTreeMap::from([(0, Some(chunk(0, 2))), (n - 1, Some(chunk(n - 1, 2)))]);
    update(&mut store, &crypto, &top, both).unwrap();
    assert!(store.puts <= 2 * stats.depth as u64, "{} pages", store.puts);
    // Metadata per GiB of content (all levels), for FORMAT.md §13.4.
    let per_gib = stats.bytes / 4;
    assert!(
        (1_200_000..1_700_000).contains(&per_gib),
        "{per_gib} bytes of table per GiB"
    );
}

#[test]
fn truncating_keeps_the_prefix_and_gives_the_table_a_prefix_alone_would_have() {
    let mut store = MemStore::new();
    let crypto = sealed_crypto();
    let all: Vec<ChunkRef> = (0..2_000).map(|i| chunk(i, 0)).collect();
    let top = build(&mut store, &crypto, all.clone()).unwrap();
    let cut: BTreeMap<u64, Option<ChunkRef>> = (700..2_000).map(|i| (i, None)).collect();
    let truncated = update(&mut store, &crypto, &top, cut).unwrap().top;
    let prefix = build(&mut store, &crypto, all[..700].to_vec()).unwrap();
    assert_eq!(truncated, prefix);
    let kept = chunks(&mut store, &crypto, &truncated, 700 * CHUNK).unwrap();
    assert_eq!(kept, all[..700].to_vec(), "every kept chunk is the old one");
}

/// Scattered writes, new holes and filled holes in one commit give the table a fresh build
/// of the same chunks gives (the shape is a function of the chunks, §5), whatever jumps the
/// update makes between far-apart edits.
#[test]
fn scattered_edits_give_the_table_of_a_fresh_build() {
    let mut store = MemStore::new();
    let crypto = TreeCrypto::Plain;
    let plain =
        |i: u64, v: u8| ChunkRef::new(i, raw_cid(&[&i.to_be_bytes()[..], &[v]].concat()), None);
    let mut now: BTreeMap<u64, ChunkRef> = (0..3_000)
        .filter(|i| i % 7 != 3)
        .map(|i| (i, plain(i, 0)))
        .collect();
    let mut top = build(&mut store, &crypto, now.values().cloned().collect()).unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for round in 1..=12u8 {
        let mut edits = BTreeMap::new();
        for _ in 0..(1 + round as u64 % 5) {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let i = (seed >> 33) % 3_200;
            let e = if (seed >> 20).is_multiple_of(3) {
                None
            } else {
                Some(plain(i, round))
            };
            edits.insert(i, e);
        }
        for (i, e) in &edits {
            match e {
                Some(c) => now.insert(*i, c.clone()),
                None => now.remove(i),
            };
        }
        top = update(&mut store, &crypto, &top, edits).unwrap().top;
        let fresh = build(&mut store, &crypto, now.values().cloned().collect()).unwrap();
        assert_eq!(top, fresh, "round {round}");
        prolly::check::<ChunkRef>(&mut store, &crypto, &top).unwrap();
    }
}

fn vectors() -> serde_json::Value {
    let text = include_str!("../../../tests/fixtures/format/vectors.json");
    serde_json::from_str::<serde_json::Value>(text).unwrap()["format3"].clone()
}

/// FORMAT.md §11: the chunk vectors `tests/fixtures/format/vectors.py` computes with
/// Python's `cryptography`, independently of this code.
#[test]
fn a_sealed_chunk_and_a_chunk_table_match_the_vectors() {
    let v = vectors();
    let c = &v["chunk"];
    let salt = ContentSalt(b64_array::<32>(c["salt_b64"].as_str().unwrap(), "salt").unwrap());
    let index = c["index"].as_u64().unwrap();
    let size = c["file_size"].as_u64().unwrap();
    let plain = c["plain"].as_str().unwrap().as_bytes();
    assert_eq!(chunk_len(size, index), Some(plain.len() as u64));
    assert_eq!(hex::encode(aad(index, plain.len() as u64)), c["aad_hex"]);
    let k = keys();
    assert_eq!(
        hex::encode(hkdf32(k.content.as_ref(), &salt.0, LABEL).as_ref()),
        c["key_hex"]
    );
    let sealed = seal_chunk_with(&k, &salt, index, plain).unwrap();
    assert_eq!(hex::encode(&sealed), c["sealed_hex"]);
    assert_eq!(open_chunk(&k, &salt, index, size, &sealed).unwrap(), plain);

    let item = &v["chunk_item"];
    let r = ChunkRef::new(5, item["cid"].as_str().unwrap().into(), Some(salt));
    assert_eq!(
        crate::format::canonical::to_json(&r.to_wire(&Indexer::Zero)),
        item["json"].as_str().unwrap().as_bytes()
    );
    assert_eq!(page::record_size(&r) as u64, item["size"].as_u64().unwrap());

    let object = v["chunk_table_object"].as_str().unwrap();
    let mut store = MemStore::new();
    let table = vec![
        ChunkRef::new(0, raw_cid(b"chunk 0"), None),
        ChunkRef::new(2, raw_cid(b"chunk 2"), None),
    ];
    let top = build(&mut store, &TreeCrypto::Plain, table.clone()).unwrap();
    assert_eq!(store.get(&top).unwrap(), object.as_bytes());
    assert_eq!(
        chunks(&mut store, &TreeCrypto::Plain, &top, 3 * CHUNK).unwrap(),
        table
    );
}

#[test]
fn a_table_of_up_to_64_chunks_is_one_page_and_a_larger_one_is_paged() {
    let mut store = MemStore::new();
    let crypto = sealed_crypto();
    let small = build(&mut store, &crypto, (0..64).map(|i| chunk(i, 0)).collect()).unwrap();
    assert_eq!(
        prolly::check::<ChunkRef>(&mut store, &crypto, &small)
            .unwrap()
            .pages,
        1
    );
    let big = build(&mut store, &crypto, (0..65).map(|i| chunk(i, 0)).collect()).unwrap();
    let stats = prolly::check::<ChunkRef>(&mut store, &crypto, &big).unwrap();
    assert!(stats.pages > 1);
    assert!(
        store.get(&small).unwrap().len() < 16 * 1024,
        "a one-page table stays small"
    );
}

// ------------------------------------------------ a file entry's `chunks` member (§12.1)

fn entry(
    name: &str,
    size: u64,
    content: Option<crate::format::FileContent>,
) -> crate::format::Entry {
    use crate::format::{Attrs, Entry, EntryKind, Inode, InodeKind, Name};
    Entry {
        name: Name::new(name.as_bytes().to_vec()).unwrap(),
        kind: EntryKind::Inode(Inode {
            kind: InodeKind::File { size, content },
            attrs: Attrs {
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime_ns: 1,
                ctime_ns: 2,
            },
            xattrs: vec![],
        }),
    }
}

/// A leaf of a whole-content file `a` and a chunked file `b`, as plaintext JSON.
fn two_forms_leaf() -> (Vec<crate::format::Entry>, String) {
    use crate::format::{Content, FileContent};
    let whole = FileContent::Whole(Content {
        cid: raw_cid(b"a"),
        salt: None,
    });
    let table = FileContent::Chunks(raw_cid(b"table of b"));
    let leaf = vec![
        entry("a", 5, Some(whole)),
        entry("b", CHUNK * 3, Some(table)),
    ];
    let bytes = page::encode(&Page::Leaf(leaf.clone()), &TreeCrypto::Plain).unwrap();
    (leaf, String::from_utf8(bytes).unwrap())
}

#[test]
fn a_chunked_file_names_its_table_among_the_nodes_where_content_would_be() {
    let (leaf, text) = two_forms_leaf();
    assert!(
        text.contains(&format!("\"nodes\":[\"{}\"]", raw_cid(b"table of b"))),
        "{text}"
    );
    assert!(text.contains("\"ctime_ns\":2,\"chunks\":0}"), "{text}");
    assert!(text.contains("\"ctime_ns\":2,\"content\":0}"), "{text}");
    let back = page::decode::<crate::format::Entry>(text.as_bytes(), &TreeCrypto::Plain).unwrap();
    assert_eq!(back, Page::Leaf(leaf.clone()));
    // Sealed: no salt beside the table (the table's items carry them).
    let crypto = sealed_crypto();
    let sealed = page::encode(&Page::Leaf(vec![leaf[1].clone()]), &crypto).unwrap();
    let back = page::decode::<crate::format::Entry>(&sealed, &crypto).unwrap();
    assert_eq!(back, Page::Leaf(vec![leaf[1].clone()]));
}

#[test]
fn a_file_with_both_forms_of_content_or_a_key_beside_its_table_is_refused() {
    let (_, text) = two_forms_leaf();
    let decode = |t: &str| page::decode::<crate::format::Entry>(t.as_bytes(), &TreeCrypto::Plain);
    let forged = [
        // both forms
        text.replace("\"chunks\":0}", "\"chunks\":0,\"content\":0}"),
        // a content key beside a table
        text.replace("\"chunks\":0}", "\"chunks\":0,\"key\":\"AAAA\"}"),
        // an empty file with a table
        text.replace(&format!("\"size\":{}", CHUNK * 3), "\"size\":0"),
        // a directory with a table
        text.replace("\"kind\":\"file\",\"size\":393216", "\"kind\":\"dir\"")
            .replace("\"chunks\":0}", "\"dir\":0,\"chunks\":0}"),
        // neither form
        text.replace(",\"chunks\":0}", "}"),
    ];
    for f in &forged {
        assert_ne!(f, &text, "the forgery must change the page");
        assert!(decode(f).is_err(), "accepted: {f}");
    }
    assert!(decode(&text).is_ok());
}
