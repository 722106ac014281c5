//! Format 3 (docs/FORMAT.md §12-13) through the filesystem core: a tree whose root is a
//! `pxfs/root/3` node and whose files are chunk tables, as a newer writer leaves it on the
//! node, read by a mount from an empty cache (an in-memory node, no kernel); the versions
//! its history table keeps, read-only under `.snapshots/` (§14.1).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use pxfs::format::chunks::{self, CHUNK, ChunkRef};
use pxfs::format::history::{Version, snapshot_name};
use pxfs::format::root::{Root, RootV3};
use pxfs::format::{
    self, Attrs, Content, DataKey, Entry, EntryKind, FileContent, Inode, InodeKind, Name,
    PageStore, TreeCrypto, TreeKeys,
};
use pxfs::fs::store::{MemoryStore, UsageRecord};
use pxfs::fs::{Attr, ContentStore, Fs, FsConfig, FsError, Kind, ROOT_INO, SetAttr, TokenInfo};
use pxfs::keys::keyring::{FixedKey, KeyRing, PlainOnly};

const TOKEN: u64 = 7;
const BTNS: &str = "k51-token-7";
const KEY: [u8; 32] = [42; 32];

fn info() -> TokenInfo {
    TokenInfo {
        token_id: TOKEN,
        quota: u64::MAX,
        overdue: false,
        last_sync: 1,
        sync_deadline: 2,
        btns: Some(BTNS.into()),
        synced_usage: 0,
    }
}

async fn mount(store: &Arc<MemoryStore>, keys: Arc<dyn KeyRing>) -> Fs {
    let mut cfg = FsConfig::new(tempfile::tempdir().unwrap().keep());
    cfg.single_token = true;
    cfg.commit_interval = std::time::Duration::from_secs(3600);
    cfg.keys = keys;
    let fs = Fs::new(cfg, store.clone()).unwrap();
    fs.add_token(info()).await.unwrap();
    fs
}

fn errno<T: std::fmt::Debug>(r: Result<T, FsError>) -> i32 {
    r.unwrap_err().errno()
}

/// Pages built by the codecs, put on the in-memory node under the CIDs it gives.
struct Pages<'a> {
    store: &'a MemoryStore,
    made: HashMap<String, Vec<u8>>,
}

impl PageStore for Pages<'_> {
    fn get(&self, cid: &str) -> format::Result<Vec<u8>> {
        match self.made.get(cid) {
            Some(b) => Ok(b.clone()),
            None => self
                .store
                .get(cid)
                .map(|b| b.to_vec())
                .ok_or_else(|| format::FormatError::Store(format!("{cid} not found"))),
        }
    }
    fn put(&mut self, bytes: Vec<u8>) -> format::Result<String> {
        let cid = self.store.object_cid(&bytes).unwrap();
        self.made.insert(cid.clone(), bytes);
        Ok(cid)
    }
}

impl Pages<'_> {
    async fn land(self) {
        let all: Vec<Bytes> = self.made.into_values().map(Bytes::from).collect();
        self.store.add_objects(all).await.unwrap();
    }
}

fn attrs(mode: u32) -> Attrs {
    Attrs {
        mode,
        uid: 0,
        gid: 0,
        mtime_ns: 1_000,
        ctime_ns: 1_000,
    }
}

fn file(name: &str, size: u64, content: FileContent) -> Entry {
    Entry {
        name: Name::new(name.as_bytes().to_vec()).unwrap(),
        kind: EntryKind::Inode(Inode {
            kind: InodeKind::File {
                size,
                content: Some(content),
            },
            attrs: attrs(0o644),
            xattrs: vec![],
        }),
    }
}

/// A file of `size` bytes: `data` at `at`, zeros elsewhere, stored as chunks (all-zero ones
/// as holes). Returns its chunk objects (index, CID) besides the table.
async fn chunked(
    store: &MemoryStore,
    keys: Option<&TreeKeys>,
    pages: &mut Pages<'_>,
    crypto: &TreeCrypto,
    size: u64,
    parts: &[(u64, &[u8])],
) -> (String, Vec<(u64, String)>) {
    let mut plain = vec![0u8; size as usize];
    for (at, data) in parts {
        plain[*at as usize..*at as usize + data.len()].copy_from_slice(data);
    }
    let mut refs = Vec::new();
    let mut stored = Vec::new();
    for index in 0..chunks::chunk_count(size) {
        let start = (index * CHUNK) as usize;
        let len = chunks::chunk_len(size, index).unwrap() as usize;
        let bytes = &plain[start..start + len];
        if chunks::is_hole(bytes) {
            continue;
        }
        let (salt, object) = match keys {
            Some(k) => {
                let (salt, sealed) = chunks::seal_chunk(k, index, bytes).unwrap();
                (Some(salt), sealed)
            }
            None => (None, bytes.to_vec()),
        };
        let cid = store
            .add_objects(vec![object.into()])
            .await
            .unwrap()
            .remove(0);
        stored.push((index, cid.clone()));
        refs.push(ChunkRef::new(index, cid, salt));
    }
    (chunks::build(pages, crypto, refs).unwrap(), stored)
}

/// The tree a format-3 writer leaves: `big` (3 MiB + 5 bytes, a hole in the middle and a
/// short last chunk), `sparse` (1 GiB, one byte at 512 MiB), `zeros` (holes only), `small`
/// (the v2 form, one object). Published under the token's name; returns the chunk objects
/// of `big` and the bytes each file must read as.
struct Built {
    big_chunks: Vec<(u64, String)>,
    big: Vec<u8>,
}

const BIG: u64 = 3 * (1 << 20) + 5;

async fn publish_format3(store: &MemoryStore, sealed: bool, prev: Option<&UsageRecord>) -> Built {
    let dk = DataKey::from_bytes(KEY);
    let (crypto, keys) = match sealed {
        true => (TreeCrypto::sealed(&dk), Some(TreeKeys::derive(&dk))),
        false => (TreeCrypto::Plain, None),
    };
    let mut pages = Pages {
        store,
        made: HashMap::new(),
    };
    let head: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8 + 1).collect();
    let tail = b"the end";
    let parts: [(u64, &[u8]); 2] = [(0, &head), (BIG - tail.len() as u64, tail)];
    let (big_top, big_chunks) =
        chunked(store, keys.as_ref(), &mut pages, &crypto, BIG, &parts).await;
    let mut big = vec![0u8; BIG as usize];
    big[..head.len()].copy_from_slice(&head);
    big[(BIG as usize - tail.len())..].copy_from_slice(tail);
    let gib = 1u64 << 30;
    let (sparse_top, _) = chunked(
        store,
        keys.as_ref(),
        &mut pages,
        &crypto,
        gib,
        &[(gib / 2, b"!")],
    )
    .await;
    let (zeros_top, _) = chunked(store, keys.as_ref(), &mut pages, &crypto, 3 * CHUNK, &[]).await;
    // A small file in the v2 form: one object (sealed as §6.2 says when encrypted).
    let small_content = match &keys {
        Some(k) => {
            let salt = pxfs::format::seal::ContentSalt::random();
            let vk = pxfs::format::seal::VersionKey::new(k, &salt);
            let sealed = pxfs::format::seal::seal_content(&vk, b"small").unwrap();
            let cid = store
                .add_objects(vec![sealed.into()])
                .await
                .unwrap()
                .remove(0);
            Content {
                cid,
                salt: Some(salt),
            }
        }
        None => Content {
            cid: store
                .add_objects(vec![Bytes::from_static(b"small")])
                .await
                .unwrap()
                .remove(0),
            salt: None,
        },
    };
    let entries = vec![
        file("big", BIG, FileContent::Chunks(big_top)),
        file("small", 5, FileContent::Whole(small_content)),
        file("sparse", gib, FileContent::Chunks(sparse_top)),
        file("zeros", 3 * CHUNK, FileContent::Chunks(zeros_top)),
    ];
    let dir = format::prolly::build(&mut pages, &crypto, entries).unwrap();
    let root = RootV3 {
        root: Root {
            attrs: attrs(0o755),
            xattrs: vec![],
            dir,
            inodes: None,
        },
        t: 1_700_000_000_000_000_000,
        history: None,
    }
    .encode(&crypto)
    .unwrap();
    let root = pages.put(root).unwrap();
    pages.land().await;
    let (content, manifests) = store.measure(&root).unwrap();
    let record = UsageRecord {
        token_id: TOKEN,
        quota: u64::MAX,
        usage: content + manifests,
        files: 4,
        root,
        last_upload: None,
        seq: prev.map_or(1, |p| p.seq + 1),
        prev: prev.and(store.published_cid(BTNS)),
        merged: None,
        encryption: prev.map(|p| p.encryption.clone()).unwrap_or_default(),
    };
    store
        .publish_usage(Some(BTNS), &record, None)
        .await
        .unwrap();
    Built { big_chunks, big }
}

fn keys_of(sealed: bool) -> Arc<dyn KeyRing> {
    match sealed {
        true => Arc::new(FixedKey(DataKey::from_bytes(KEY))),
        false => Arc::new(PlainOnly),
    }
}

async fn read_all(fs: &Fs, name: &str, from: u64, len: u32) -> Result<Vec<u8>, FsError> {
    let ino = fs.lookup(ROOT_INO, name).await?.ino;
    let fh = fs.open(ino, libc::O_RDONLY).await?;
    let r = fs.read(fh, from, len).await.map(|b| b.to_vec());
    fs.release(fh).await.unwrap();
    r
}

/// An encrypted sNFT made by the mount itself ([`sealed_key_published`]), then replaced
/// by a format-3 tree under the same key, as a newer pxfs would.
async fn sealed_format3(store: &Arc<MemoryStore>) -> Built {
    let prev = sealed_key_published(store).await;
    publish_format3(store, true, Some(&prev)).await
}

#[tokio::test]
async fn chunked_files_read_back_whole_with_holes_as_zeros_plaintext_and_sealed() {
    for sealed in [false, true] {
        let store = Arc::new(MemoryStore::new());
        let (built, keys): (Built, Arc<dyn KeyRing>) = match sealed {
            false => (
                publish_format3(&store, false, None).await,
                Arc::new(PlainOnly),
            ),
            true => (
                sealed_format3(&store).await,
                Arc::new(FixedKey(DataKey::from_bytes(KEY))),
            ),
        };
        let fs = mount(&store, keys).await;
        let mut names: Vec<String> = fs
            .readdir(ROOT_INO, 0)
            .await
            .unwrap()
            .into_iter()
            .map(|e| String::from_utf8(e.name).unwrap())
            .filter(|n| n != "." && n != "..")
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["big", "small", "sparse", "zeros"],
            "sealed: {sealed}"
        );
        assert_eq!(fs.lookup(ROOT_INO, "big").await.unwrap().size, BIG);
        assert!(
            read_all(&fs, "big", 0, 1 << 24).await.unwrap() == built.big,
            "big reads back"
        );
        // A read across a stored chunk, a hole and the short last chunk.
        let at = 200_000 - 10;
        let got = read_all(&fs, "big", at, 3 * CHUNK as u32).await.unwrap();
        assert_eq!(
            got[..],
            built.big[at as usize..at as usize + 3 * CHUNK as usize]
        );
        assert_eq!(read_all(&fs, "small", 0, 100).await.unwrap(), b"small");
        let half = 1u64 << 29;
        let around = read_all(&fs, "sparse", half - 3, 6).await.unwrap();
        assert_eq!(around, [0, 0, 0, b'!', 0, 0], "sealed: {sealed}");
        assert_eq!(
            read_all(&fs, "sparse", 7 << 20, 4096).await.unwrap(),
            vec![0; 4096]
        );
        assert!(read_all(&fs, "zeros", 0, 1 << 20).await.unwrap() == vec![0; 3 * CHUNK as usize]);
        // Usage is what the node stores for the tree: holes cost nothing.
        let measured = {
            let r = store.published(BTNS).unwrap();
            let (c, m) = store.measure(&r.root).unwrap();
            c + m
        };
        let usage = fs.getxattr(ROOT_INO, "user.pxfs.usage").await.unwrap();
        let usage: u64 = String::from_utf8(usage).unwrap().parse().unwrap();
        assert_eq!(usage, measured, "sealed: {sealed}");
        assert!(
            measured < 2 << 20,
            "a sparse GiB costs a chunk, not a GiB: {measured}"
        );
        // A format-3 tree without history is written on: its chunked files stay as they are.
        fs.mkdir(ROOT_INO, "new", 0o755, 0, 0).await.unwrap();
        fs.flush_all().await.unwrap();
        fs.abort();
        let fs = mount(&store, keys_of(sealed)).await;
        assert!(fs.lookup(ROOT_INO, "new").await.is_ok());
        assert!(
            read_all(&fs, "big", 0, 1 << 24).await.unwrap() == built.big,
            "big reads back"
        );
        fs.abort();
    }
}

#[tokio::test]
async fn a_swapped_or_altered_chunk_or_a_table_that_lengthens_its_file_reads_as_eio() {
    let store = Arc::new(MemoryStore::new());
    let built = sealed_format3(&store).await;
    let keys = || -> Arc<dyn KeyRing> { Arc::new(FixedKey(DataKey::from_bytes(KEY))) };
    let (first, second) = (&built.big_chunks[0], &built.big_chunks[1]);
    let original = store.get(&first.1).unwrap();

    // Swapped: chunk 0's object serves chunk 1's bytes (a valid sealed chunk elsewhere).
    store.replace(&first.1, store.get(&second.1).unwrap());
    let fs = mount(&store, keys()).await;
    assert_eq!(errno(read_all(&fs, "big", 0, 4096).await), libc::EIO);
    // The rest of the file still reads.
    let tail = read_all(&fs, "big", BIG - 7, 7).await.unwrap();
    assert_eq!(tail, b"the end");
    fs.abort();

    // A flipped byte.
    store.replace(&first.1, original.clone());
    store.flip_byte(&first.1, 100);
    let fs = mount(&store, keys()).await;
    assert_eq!(errno(read_all(&fs, "big", 0, 4096).await), libc::EIO);
    fs.abort();
    store.replace(&first.1, original);
    let fs = mount(&store, keys()).await;
    assert_eq!(
        read_all(&fs, "big", 0, 4096).await.unwrap(),
        built.big[..4096]
    );
    fs.abort();

    // A table naming a chunk past its file's end (the node cannot lengthen a file): the
    // entry says 5 bytes, its table holds chunks up to 3 MiB.
    let crypto = TreeCrypto::sealed(&DataKey::from_bytes(KEY));
    let prev = store.published(BTNS).unwrap();
    let mut pages = Pages {
        store: &store,
        made: HashMap::new(),
    };
    let dir_top = {
        let r = Root::decode_any(&store.get(&prev.root).unwrap(), &crypto).unwrap();
        r.root.dir
    };
    let mut entries: Vec<Entry> = format::prolly::records(&mut pages, &crypto, &dir_top).unwrap();
    for e in &mut entries {
        if let EntryKind::Inode(Inode {
            kind:
                InodeKind::File {
                    size,
                    content: Some(FileContent::Chunks(_)),
                },
            ..
        }) = &mut e.kind
            && e.name.as_bytes() == b"big"
        {
            *size = 5;
        }
    }
    let dir = format::prolly::build(&mut pages, &crypto, entries).unwrap();
    let root = RootV3 {
        root: Root {
            attrs: attrs(0o755),
            xattrs: vec![],
            dir,
            inodes: None,
        },
        t: 1_700_000_001_000_000_000,
        history: None,
    }
    .encode(&crypto)
    .unwrap();
    let root = pages.put(root).unwrap();
    pages.land().await;
    let record = UsageRecord {
        root,
        seq: prev.seq + 1,
        prev: store.published_cid(BTNS),
        ..prev
    };
    store
        .publish_usage(Some(BTNS), &record, None)
        .await
        .unwrap();
    let fs = mount(&store, keys()).await;
    assert_eq!(fs.lookup(ROOT_INO, "big").await.unwrap().size, 5);
    assert_eq!(errno(read_all(&fs, "big", 0, 5).await), libc::EIO);
    assert_eq!(read_all(&fs, "small", 0, 5).await.unwrap(), b"small");
    fs.abort();
}

// ------------------------------------------------------------------ writing chunks (§13.1)

/// Bytes of the objects the node holds.
fn node_bytes(store: &MemoryStore) -> u64 {
    store.objects().iter().map(|o| o.len() as u64).sum()
}

async fn write_at(fs: &Fs, name: &str, at: u64, data: &[u8], create: bool) {
    let fh = match create {
        true => {
            fs.create(ROOT_INO, name, 0o644, libc::O_RDWR, 0, 0)
                .await
                .unwrap()
                .1
        }
        false => {
            let ino = fs.lookup(ROOT_INO, name).await.unwrap().ino;
            fs.open(ino, libc::O_RDWR).await.unwrap()
        }
    };
    fs.write(fh, at, data).await.unwrap();
    fs.fsync(fh).await.unwrap();
    fs.release(fh).await.unwrap();
}

/// The published root's entry `name`.
fn published_entry(store: &MemoryStore, sealed: bool, name: &str) -> Entry {
    let crypto = match sealed {
        true => TreeCrypto::sealed(&DataKey::from_bytes(KEY)),
        false => TreeCrypto::Plain,
    };
    let mut pages = Pages {
        store,
        made: HashMap::new(),
    };
    let root = store.published(BTNS).unwrap().root;
    let r = Root::decode_any(&pages.get(&root).unwrap(), &crypto).unwrap();
    assert!(r.v3.is_some(), "the root is a pxfs/root/3 node");
    let entries: Vec<Entry> = format::prolly::records(&mut pages, &crypto, &r.root.dir).unwrap();
    entries
        .into_iter()
        .find(|e| e.name.as_bytes() == name.as_bytes())
        .unwrap()
}

fn is_chunked(e: &Entry) -> bool {
    matches!(
        &e.kind,
        EntryKind::Inode(Inode {
            kind: InodeKind::File {
                content: Some(FileContent::Chunks(_)),
                ..
            },
            ..
        })
    )
}

/// A file written again whole (`O_TRUNC`, as `cp` over it does) stores only the chunks whose
/// bytes changed: the others are known unchanged by their plaintext's digest (an encrypted
/// tree) or their CID (a plaintext one); a chunk changed in a single byte is not.
#[tokio::test]
async fn a_whole_rewrite_stores_only_the_chunks_that_changed() {
    for sealed in [false, true] {
        let store = Arc::new(MemoryStore::new());
        let fs = mount(&store, keys_of(sealed)).await;
        let mut data: Vec<u8> = (0..(2u32 << 20)).map(|i| (i * 13 % 253) as u8).collect();
        write_at(&fs, "big", 0, &data, true).await;
        for round in 0..3u8 {
            // One byte in chunk 5 differs each round; the other 15 chunks are the same.
            data[5 * CHUNK as usize + 77] ^= 0x5a ^ round;
            let before = node_bytes(&store);
            let ino = fs.lookup(ROOT_INO, "big").await.unwrap().ino;
            let fh = fs.open(ino, libc::O_RDWR | libc::O_TRUNC).await.unwrap();
            fs.write(fh, 0, &data).await.unwrap();
            fs.fsync(fh).await.unwrap();
            fs.release(fh).await.unwrap();
            let grew = node_bytes(&store) - before;
            assert!(
                (CHUNK..=CHUNK + 16 + 64 * 1024).contains(&grew),
                "sealed {sealed}, round {round}: a rewrite changing one chunk stored {grew} bytes"
            );
        }
        fs.abort();
        let other = mount(&store, keys_of(sealed)).await;
        assert!(
            read_all(&other, "big", 0, 1 << 24).await.unwrap() == data,
            "sealed {sealed}: the rewritten file reads back"
        );
        other.abort();
    }
}

/// Reads `name` from the start to its end in reads of `step` bytes, as the kernel sends a
/// sequential reader's: what each read returned, up to the first that failed (and its error).
async fn read_in_order(fs: &Fs, name: &str, step: u32) -> (Vec<u8>, Option<FsError>) {
    let ino = fs.lookup(ROOT_INO, name).await.unwrap().ino;
    let fh = fs.open(ino, libc::O_RDONLY).await.unwrap();
    let mut out = Vec::new();
    let failed = loop {
        match fs.read(fh, out.len() as u64, step).await {
            Ok(b) if b.is_empty() => break None,
            Ok(b) => out.extend_from_slice(&b),
            Err(e) => break Some(e),
        }
    };
    fs.release(fh).await.unwrap();
    (out, failed)
}

/// A sequential reader of a chunked file gets the chunks ahead of it fetched in runs (one
/// request for many, `ContentStore::read_sealed_run`), in an encrypted tree (each chunk
/// authenticated by opening it) and in a plaintext one (each checked against its CID).
/// Whatever a node answers there — only the first chunk, the chunks in another order,
/// altered bytes, a failure part-way — the reader gets the file's own bytes, the chunks the
/// run did not give being read one by one; and a sealed chunk the node alters everywhere
/// reads as `EIO`, every byte before it right.
#[tokio::test]
async fn chunks_read_ahead_in_runs_are_the_files_own_whatever_the_node_answers() {
    use pxfs::fs::store::RunAnswer;
    let data: Vec<u8> = (0..(6u32 << 20))
        .map(|i| (i * 7 % 251) as u8 ^ (i >> 17) as u8)
        .collect();
    for sealed in [false, true] {
        let store = Arc::new(MemoryStore::new());
        let fs = mount(&store, keys_of(sealed)).await;
        write_at(&fs, "big", 0, &data, true).await;
        fs.abort();
        let tag = if sealed { 16 } else { 0 };
        let stored = (data.len() as u64).div_ceil(CHUNK) * (CHUNK + tag);
        for answer in [
            RunAnswer::Honest,
            RunAnswer::FirstOnly,
            RunAnswer::Shuffled,
            RunAnswer::Altered,
            RunAnswer::BreaksOff,
            RunAnswer::Unsupported,
        ] {
            store.set_run_answer(answer);
            let (runs, served) = (store.run_reads(), store.served_bytes());
            let fs = mount(&store, keys_of(sealed)).await;
            for step in [1u32 << 20, 128 << 10] {
                let (got, failed) = read_in_order(&fs, "big", step).await;
                let case = format!("sealed {sealed}, {answer:?}, reads of {step}");
                assert!(failed.is_none(), "{case}: {failed:?}");
                assert!(got == data, "{case}: other bytes");
            }
            fs.abort();
            let runs = store.run_reads() - runs;
            match answer {
                RunAnswer::Unsupported => assert_eq!(runs, 0),
                _ => assert!(runs > 0, "sealed {sealed}, {answer:?}: no run read ahead"),
            }
            if answer == RunAnswer::Honest {
                // Each chunk came from the node once (the second pass reads the same opened
                // chunks or asks again; never more than twice the file in all).
                let sent = store.served_bytes() - served;
                assert!(
                    sent <= 2 * stored,
                    "sealed {sealed}: an honest node sent {sent} bytes for two passes over {stored}"
                );
            }
        }
    }
    let store = Arc::new(MemoryStore::new());
    let fs = mount(&store, keys_of(true)).await;
    write_at(&fs, "big", 0, &data, true).await;
    fs.abort();
    // One chunk altered on the node itself: every run and every read alone gives it so.
    let victim = store
        .objects()
        .into_iter()
        .find(|o| o.len() as u64 == CHUNK + 16)
        .map(|o| store.object_cid(&o).unwrap())
        .unwrap();
    store.flip_byte(&victim, 1000);
    for answer in [
        RunAnswer::Honest,
        RunAnswer::Shuffled,
        RunAnswer::Unsupported,
    ] {
        store.set_run_answer(answer);
        let fs = mount(&store, keys_of(true)).await;
        let (got, failed) = read_in_order(&fs, "big", 1 << 20).await;
        let failed = failed.unwrap_or_else(|| panic!("{answer:?}: the altered chunk read"));
        assert_eq!(failed.errno(), libc::EIO, "{answer:?}: {failed:?}");
        assert!(
            got.len() < data.len() && got == data[..got.len()],
            "{answer:?}"
        );
        fs.abort();
    }
}

#[tokio::test]
async fn a_4_kib_rewrite_uploads_one_chunk_and_the_file_reads_back_on_a_fresh_cache() {
    for sealed in [false, true] {
        let store = Arc::new(MemoryStore::new());
        let fs = mount(&store, keys_of(sealed)).await;
        let mut data: Vec<u8> = (0..(4u32 << 20)).map(|i| (i * 7 % 251) as u8).collect();
        write_at(&fs, "db", 0, &data, true).await;
        // Written in order from empty, it went to the node as one stream (the v2 form); its
        // first rewrite stores it as chunks.
        write_at(&fs, "db", 10, b"first edit", false).await;
        data[10..20].copy_from_slice(b"first edit");
        assert!(is_chunked(&published_entry(&store, sealed, "db")));

        // A 4 KiB page in the middle, fsynced: one chunk and a few KiB of metadata.
        let before = node_bytes(&store);
        let page = vec![0xEE; 4096];
        write_at(&fs, "db", 1_500_000, &page, false).await;
        data[1_500_000..1_500_000 + 4096].copy_from_slice(&page);
        let grew = node_bytes(&store) - before;
        assert!(
            grew <= CHUNK + 16 + 64 * 1024,
            "sealed {sealed}: a 4 KiB rewrite stored {grew} bytes"
        );
        assert!(grew >= CHUNK, "the changed chunk is stored: {grew}");

        // An append stores the new tail; a truncate keeps the prefix.
        let before = node_bytes(&store);
        write_at(&fs, "db", data.len() as u64, b"tail", false).await;
        data.extend_from_slice(b"tail");
        let grew = node_bytes(&store) - before;
        assert!(
            grew <= 2 * (CHUNK + 16) + 64 * 1024,
            "an append stored {grew}"
        );
        let ino = fs.lookup(ROOT_INO, "db").await.unwrap().ino;
        fs.setattr(
            ino,
            pxfs::fs::SetAttr {
                size: Some(3_000_000),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        data.truncate(3_000_000);
        fs.flush_all().await.unwrap();

        // Usage is what the node holds for the tree, each shared chunk once.
        let usage = fs.getxattr(ROOT_INO, "user.pxfs.usage").await.unwrap();
        let usage: u64 = String::from_utf8(usage).unwrap().parse().unwrap();
        let r = store.published(BTNS).unwrap();
        let (c, m) = store.measure(&r.root).unwrap();
        assert_eq!(usage, c + m, "sealed {sealed}");
        fs.abort();

        let other = mount(&store, keys_of(sealed)).await;
        assert!(
            read_all(&other, "db", 0, 1 << 24).await.unwrap() == data,
            "sealed {sealed}: db reads back"
        );
        // The chunks the versions shared are still on the node (none unpinned early).
        let (c2, _) = store.measure(&r.root).unwrap();
        assert_eq!(c, c2);
        other.abort();
    }
}

#[tokio::test]
async fn a_sparse_gibibyte_with_one_byte_stores_one_chunk_and_reads_back_as_zeros() {
    for sealed in [false, true] {
        let store = Arc::new(MemoryStore::new());
        let fs = mount(&store, keys_of(sealed)).await;
        let before = node_bytes(&store);
        let (attr, fh) = fs
            .create(ROOT_INO, "sparse", 0o644, libc::O_RDWR, 0, 0)
            .await
            .unwrap();
        fs.setattr(
            attr.ino,
            pxfs::fs::SetAttr {
                size: Some(1 << 30),
                fh: Some(fh),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        fs.write(fh, 512 << 20, b"!").await.unwrap();
        fs.fsync(fh).await.unwrap();
        fs.release(fh).await.unwrap();
        fs.flush_all().await.unwrap();
        let grew = node_bytes(&store) - before;
        assert!(
            grew <= CHUNK + 16 + 64 * 1024,
            "sealed {sealed}: stored {grew}"
        );
        let usage = fs.getxattr(ROOT_INO, "user.pxfs.usage").await.unwrap();
        let usage: u64 = String::from_utf8(usage).unwrap().parse().unwrap();
        assert!(usage <= CHUNK + 16 + 64 * 1024, "usage {usage}");
        fs.abort();
        let other = mount(&store, keys_of(sealed)).await;
        assert_eq!(
            other.lookup(ROOT_INO, "sparse").await.unwrap().size,
            1 << 30
        );
        let around = read_all(&other, "sparse", (512 << 20) - 2, 4)
            .await
            .unwrap();
        assert_eq!(around, [0, 0, b'!', 0]);
        other.abort();
    }
}

/// Every object the published tree refers to (through `nodes` and `data`).
fn reachable(store: &MemoryStore) -> Vec<String> {
    let root = store.published(BTNS).unwrap().root;
    let mut seen = std::collections::HashSet::new();
    let mut pending = vec![root];
    let mut out = Vec::new();
    while let Some(cid) = pending.pop() {
        if !seen.insert(cid.clone()) {
            continue;
        }
        out.push(cid.clone());
        let bytes = store.get(&cid).unwrap();
        if let Ok((_, lists)) = format::envelope::public(&bytes) {
            pending.extend(lists.nodes);
            for d in lists.data {
                if seen.insert(d.clone()) {
                    out.push(d);
                }
            }
        }
    }
    out
}

/// Versions that share chunks come and go quickly (closes faster than uploads, so some are
/// moot before they land): no chunk the published tree still uses is ever unpinned.
#[tokio::test]
async fn rewrites_in_quick_succession_never_unpin_a_chunk_the_tree_still_uses() {
    for seed in 0..4u64 {
        let store = Arc::new(MemoryStore::new());
        let fs = mount(&store, keys_of(seed % 2 == 1)).await;
        let mut data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 253) as u8).collect();
        write_at(&fs, "f", 0, &data, true).await;
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        for round in 0..12u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let at = (x % (data.len() as u64 - 100)) as usize;
            let ino = fs.lookup(ROOT_INO, "f").await.unwrap().ino;
            let fh = fs.open(ino, libc::O_RDWR).await.unwrap();
            let bytes = [round as u8 + 1; 100];
            fs.write(fh, at as u64, &bytes).await.unwrap();
            data[at..at + 100].copy_from_slice(&bytes);
            // Now and then an fsync: a commit (and its unpins) between the rewrites.
            if round % 4 == 3 {
                fs.fsync(fh).await.unwrap();
            }
            fs.release(fh).await.unwrap();
        }
        fs.flush_all().await.unwrap();
        // Unpins happen once the commit's document holds: give them that moment.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        fs.flush_all().await.unwrap();
        let reachable = reachable(&store);
        for cid in &reachable {
            assert!(store.is_pinned(cid), "seed {seed}: {cid} is unpinned");
        }
        // The chunks the rewrites replaced were given back (so unpinning did run).
        let unpinned = store
            .objects()
            .iter()
            .filter(|o| !store.is_pinned(&store.object_cid(o).unwrap()))
            .count();
        assert!(unpinned > 0, "seed {seed}: nothing was unpinned");
        fs.abort();
        let other = mount(&store, keys_of(seed % 2 == 1)).await;
        assert!(
            read_all(&other, "f", 0, 1 << 22).await.unwrap() == data,
            "seed {seed}: the file reads back"
        );
        other.abort();
    }
}

// ---- `.snapshots/`: the versions the history table keeps (docs/FORMAT.md §14.1) ----

const NS: i64 = 1_000_000_000;
/// The first kept version's commit time (2025-11-24T16:00:00Z); the second is an hour
/// later, the current tree two hours later.
const T0: i64 = 1_764_000_000 * NS;

/// `bytes` stored as one object (sealed as §6.2 says under `keys`).
async fn stored_whole(
    store: &MemoryStore,
    keys: Option<&TreeKeys>,
    bytes: &'static [u8],
) -> FileContent {
    let (object, salt) = match keys {
        Some(k) => {
            let salt = pxfs::format::seal::ContentSalt::random();
            let vk = pxfs::format::seal::VersionKey::new(k, &salt);
            let sealed = pxfs::format::seal::seal_content(&vk, bytes).unwrap();
            (Bytes::from(sealed), Some(salt))
        }
        None => (Bytes::from_static(bytes), None),
    };
    let cid = store.add_objects(vec![object]).await.unwrap().remove(0);
    FileContent::Whole(Content { cid, salt })
}

fn subdir(name: &str, top: &str) -> Entry {
    Entry {
        name: Name::new(name.as_bytes().to_vec()).unwrap(),
        kind: EntryKind::Inode(Inode {
            kind: InodeKind::Dir { top: top.into() },
            attrs: attrs(0o755),
            xattrs: vec![],
        }),
    }
}

/// A format-3 tree with two kept versions, as a writer keeping history leaves it:
/// - the first (T0): `big` (chunked), `doc` ("doc, first"), `gone`, `sub/inner`, and
///   `h1` and `h2`, two names of one file (a link group of its `inodes` table);
/// - the second (T0 + 1 h, its sNFT directory's mode 0750): `doc` ("doc, second"), `gone`,
///   `sub/inner`;
/// - the current tree (T0 + 2 h): `doc` ("doc, now"), `sub/inner`: `gone` was deleted.
///
/// `sub` is the same directory (one CID) in all three. Sealed under [`KEY`] after `prev`
/// (the document that published that key) if given. Returns the versions' names.
async fn publish_with_history(store: &MemoryStore, prev: Option<&UsageRecord>) -> [String; 2] {
    let dk = DataKey::from_bytes(KEY);
    let (crypto, keys) = match prev {
        Some(_) => (TreeCrypto::sealed(&dk), Some(TreeKeys::derive(&dk))),
        None => (TreeCrypto::Plain, None),
    };
    let keys = keys.as_ref();
    let mut pages = Pages {
        store,
        made: HashMap::new(),
    };
    let inner = stored_whole(store, keys, b"inner").await;
    let sub = format::prolly::build(&mut pages, &crypto, vec![file("inner", 5, inner)]).unwrap();
    let (big_top, _) = chunked(
        store,
        keys,
        &mut pages,
        &crypto,
        BIG,
        &[(0, b"first chunk"), (BIG - 4, b"last")],
    )
    .await;
    let gone = stored_whole(store, keys, b"deleted later").await;
    let first = vec![
        file("big", BIG, FileContent::Chunks(big_top)),
        file("doc", 10, stored_whole(store, keys, b"doc, first").await),
        file("gone", 13, gone.clone()),
        subdir("sub", &sub),
    ];
    let second = vec![
        file("doc", 11, stored_whole(store, keys, b"doc, second").await),
        file("gone", 13, gone),
        subdir("sub", &sub),
    ];
    let now = vec![
        file("doc", 8, stored_whole(store, keys, b"doc, now").await),
        subdir("sub", &sub),
    ];
    let mut first = first;
    let group = format::GroupId(1u64.to_be_bytes());
    for name in ["h1", "h2"] {
        first.push(Entry {
            name: Name::new(name.as_bytes().to_vec()).unwrap(),
            kind: EntryKind::Link(group),
        });
    }
    let linked = EntryKind::Inode(Inode {
        kind: InodeKind::File {
            size: 6,
            content: Some(stored_whole(store, keys, b"linked").await),
        },
        attrs: attrs(0o644),
        xattrs: vec![],
    });
    let record = format::InodeRecord {
        id: group,
        nlink: 2,
        kind: linked,
    };
    let inodes = format::prolly::build(&mut pages, &crypto, vec![record]).unwrap();
    first.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    let first = format::prolly::build(&mut pages, &crypto, first).unwrap();
    let second = format::prolly::build(&mut pages, &crypto, second).unwrap();
    let now = format::prolly::build(&mut pages, &crypto, now).unwrap();
    let versions = vec![
        Version::new(T0, attrs(0o755), vec![], first, Some(inodes), 0).unwrap(),
        Version::new(T0 + 3600 * NS, attrs(0o750), vec![], second, None, 0).unwrap(),
    ];
    let history = format::prolly::build(&mut pages, &crypto, versions).unwrap();
    let root = RootV3 {
        root: Root {
            attrs: attrs(0o755),
            xattrs: vec![],
            dir: now,
            inodes: None,
        },
        t: T0 + 7200 * NS,
        history: Some(history),
    }
    .encode(&crypto)
    .unwrap();
    let root = pages.put(root).unwrap();
    pages.land().await;
    let (content, manifests) = store.measure(&root).unwrap();
    let record = UsageRecord {
        token_id: TOKEN,
        quota: u64::MAX,
        usage: content + manifests,
        files: 2,
        root,
        last_upload: None,
        seq: prev.map_or(1, |p| p.seq + 1),
        prev: prev.and(store.published_cid(BTNS)),
        merged: None,
        encryption: prev.map(|p| p.encryption.clone()).unwrap_or_default(),
    };
    store
        .publish_usage(Some(BTNS), &record, None)
        .await
        .unwrap();
    [snapshot_name(T0), snapshot_name(T0 + 3600 * NS)]
}

/// The inode at `path` below the mount root, looked up name by name.
async fn walk(fs: &Fs, path: &str) -> Result<Attr, FsError> {
    let mut attr = fs.getattr(ROOT_INO).await?;
    for part in path.split('/') {
        attr = fs.lookup(attr.ino, part).await?;
    }
    Ok(attr)
}

async fn read_path(fs: &Fs, path: &str) -> Result<Vec<u8>, FsError> {
    let ino = walk(fs, path).await?.ino;
    let fh = fs.open(ino, libc::O_RDONLY).await?;
    let r = fs.read(fh, 0, 1 << 24).await.map(|b| b.to_vec());
    fs.release(fh).await.unwrap();
    r
}

async fn listing(fs: &Fs, ino: u64) -> Vec<String> {
    let mut names: Vec<String> = fs
        .readdir(ino, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| String::from_utf8(e.name).unwrap())
        .filter(|n| n != "." && n != "..")
        .collect();
    names.sort();
    names
}

fn usage_of(store: &MemoryStore) -> u64 {
    let r = store.published(BTNS).unwrap();
    let (c, m) = store.measure(&r.root).unwrap();
    c + m
}

#[tokio::test]
async fn kept_versions_read_under_snapshots_which_the_root_does_not_list() {
    for sealed in [false, true] {
        let store = Arc::new(MemoryStore::new());
        let (prev, keys) = match sealed {
            true => (Some(sealed_key_published(&store).await), keys_of(true)),
            false => (None, keys_of(false)),
        };
        let names = publish_with_history(&store, prev.as_ref()).await;
        assert_eq!(names[0], "20251124T160000Z");
        // Each mount starts from an empty cache: the second reads it all from the node again.
        for _ in 0..2 {
            versions_read_back(&store, keys.clone(), &names).await;
        }
    }
}

/// An encrypted sNFT made by the mount (so its key is published as pxfs publishes it):
/// its document, which the format-3 tree then follows.
async fn sealed_key_published(store: &Arc<MemoryStore>) -> UsageRecord {
    let first = mount(store, keys_of(true)).await;
    first.mkdir(ROOT_INO, "d", 0o755, 0, 0).await.unwrap();
    first.flush_all().await.unwrap();
    first.abort();
    let prev = store.published(BTNS).unwrap();
    assert!(
        matches!(prev.encryption, format::usage::Encryption::Sealed(_)),
        "{:?}",
        prev.encryption
    );
    prev
}

async fn versions_read_back(store: &Arc<MemoryStore>, keys: Arc<dyn KeyRing>, names: &[String; 2]) {
    let [first, second] = names.clone();
    let fs = mount(store, keys).await;
    assert_eq!(listing(&fs, ROOT_INO).await, ["doc", "sub"]);
    let snaps = fs.lookup(ROOT_INO, ".snapshots").await.unwrap();
    assert_eq!(snaps.kind, Kind::Dir);
    assert_eq!(snaps.meta.mode, 0o555);
    assert_eq!(
        listing(&fs, snaps.ino).await,
        [first.clone(), second.clone()]
    );
    let one = format!(".snapshots/{first}");
    let two = format!(".snapshots/{second}");
    assert_eq!(
        listing(&fs, walk(&fs, &one).await.unwrap().ino).await,
        ["big", "doc", "gone", "h1", "h2", "sub"]
    );
    assert_eq!(walk(&fs, &two).await.unwrap().meta.mode, 0o750);
    // Two names of one file, from the version's link-group table.
    let (h1, h2) = (
        walk(&fs, &format!("{one}/h1")).await.unwrap(),
        walk(&fs, &format!("{one}/h2")).await.unwrap(),
    );
    assert_eq!((h1.ino, h1.nlink, h1.size), (h2.ino, 2, 6));
    assert_eq!(
        read_path(&fs, &format!("{one}/h2")).await.unwrap(),
        b"linked"
    );
    // Deleted from the current tree, read from the versions that had it.
    assert_eq!(errno(walk(&fs, "gone").await), libc::ENOENT);
    for v in [&one, &two] {
        assert_eq!(
            read_path(&fs, &format!("{v}/gone")).await.unwrap(),
            b"deleted later"
        );
    }
    // Overwritten: each version reads its own bytes.
    assert_eq!(read_path(&fs, "doc").await.unwrap(), b"doc, now");
    assert_eq!(
        read_path(&fs, &format!("{one}/doc")).await.unwrap(),
        b"doc, first"
    );
    assert_eq!(
        read_path(&fs, &format!("{two}/doc")).await.unwrap(),
        b"doc, second"
    );
    assert_eq!(
        read_path(&fs, &format!("{one}/sub/inner")).await.unwrap(),
        b"inner"
    );
    // A chunked file of a version, holes as zeros.
    let big = read_path(&fs, &format!("{one}/big")).await.unwrap();
    assert_eq!(big.len() as u64, BIG);
    assert_eq!(&big[..11], b"first chunk");
    assert_eq!(&big[big.len() - 4..], b"last");
    assert!(big[11..big.len() - 4].iter().all(|b| *b == 0));
    assert_eq!(
        errno(walk(&fs, ".snapshots/20200101T000000Z").await),
        libc::ENOENT
    );
    // Nothing a version shares with the current tree (`sub`) or another version
    // (`gone`) counts twice: usage is what the node stores for the root.
    let usage = fs.getxattr(ROOT_INO, "user.pxfs.usage").await.unwrap();
    let usage: u64 = String::from_utf8(usage).unwrap().parse().unwrap();
    assert_eq!(usage, usage_of(store));
    fs.abort();
}

#[tokio::test]
async fn every_change_under_snapshots_is_refused_with_erofs() {
    let store = Arc::new(MemoryStore::new());
    let [first, _] = publish_with_history(&store, None).await;
    let fs = mount(&store, Arc::new(PlainOnly)).await;
    let snaps = fs.lookup(ROOT_INO, ".snapshots").await.unwrap().ino;
    let v = walk(&fs, &format!(".snapshots/{first}")).await.unwrap().ino;
    let doc = fs.lookup(v, "doc").await.unwrap().ino;
    let sub = fs.lookup(v, "sub").await.unwrap().ino;
    let erofs = libc::EROFS;
    assert_eq!(errno(fs.mkdir(snaps, "new", 0o755, 0, 0).await), erofs);
    assert_eq!(errno(fs.mkdir(v, "new", 0o755, 0, 0).await), erofs);
    assert_eq!(
        errno(fs.create(v, "new", 0o644, libc::O_WRONLY, 0, 0).await),
        erofs
    );
    assert_eq!(errno(fs.unlink(v, "doc").await), erofs);
    assert_eq!(errno(fs.rmdir(v, "sub").await), erofs);
    assert_eq!(errno(fs.rmdir(snaps, &first).await), erofs);
    assert_eq!(
        errno(fs.rename(v, "doc", v, "doc2", false, false).await),
        erofs
    );
    assert_eq!(
        errno(fs.rename(v, "doc", ROOT_INO, "doc2", false, false).await),
        erofs
    );
    assert_eq!(
        errno(fs.rename(ROOT_INO, "doc", sub, "doc", false, false).await),
        erofs
    );
    assert_eq!(errno(fs.link(doc, v, "again").await), erofs);
    assert_eq!(errno(fs.symlink(v, "s", "doc", 0, 0).await), erofs);
    let chmod = SetAttr {
        mode: Some(0o600),
        ..Default::default()
    };
    assert_eq!(errno(fs.setattr(doc, chmod).await), erofs);
    assert_eq!(errno(fs.setattr(v, chmod).await), erofs);
    let truncate = SetAttr {
        size: Some(0),
        ..Default::default()
    };
    assert_eq!(errno(fs.setattr(doc, truncate).await), erofs);
    assert_eq!(errno(fs.setxattr(doc, "user.x", b"1", 0).await), erofs);
    assert_eq!(errno(fs.open(doc, libc::O_WRONLY).await), erofs);
    assert_eq!(errno(fs.open(doc, libc::O_RDWR).await), erofs);
    // The view itself: its name is taken, and it cannot be removed or renamed.
    assert_eq!(
        errno(fs.mkdir(ROOT_INO, ".snapshots", 0o755, 0, 0).await),
        libc::EEXIST
    );
    assert_eq!(errno(fs.rmdir(ROOT_INO, ".snapshots").await), erofs);
    assert_eq!(errno(fs.unlink(ROOT_INO, ".snapshots").await), erofs);
    assert_eq!(
        errno(
            fs.rename(ROOT_INO, ".snapshots", ROOT_INO, "x", false, false)
                .await
        ),
        erofs
    );
    // Nothing changed.
    assert_eq!(
        read_path(&fs, &format!(".snapshots/{first}/doc"))
            .await
            .unwrap(),
        b"doc, first"
    );
    assert_eq!(
        walk(&fs, &format!(".snapshots/{first}/doc"))
            .await
            .unwrap()
            .meta
            .mode,
        0o644
    );
    fs.abort();
}

#[tokio::test]
async fn a_version_read_under_snapshots_unloads_like_a_live_directory() {
    let store = Arc::new(MemoryStore::new());
    let [_, second] = publish_with_history(&store, None).await;
    let fs = mount(&store, Arc::new(PlainOnly)).await;
    let v = walk(&fs, &format!(".snapshots/{second}"))
        .await
        .unwrap()
        .ino;
    assert_eq!(listing(&fs, v).await.len(), 3);
    let usage = || async {
        let u = fs.getxattr(ROOT_INO, "user.pxfs.usage").await.unwrap();
        String::from_utf8(u).unwrap().parse::<u64>().unwrap()
    };
    let before = usage().await;
    assert!(fs.unload_dir(v), "nothing holds the version's entries");
    assert_eq!(usage().await, before);
    // Read again from its pages, under a new number.
    assert_eq!(
        read_path(&fs, &format!(".snapshots/{second}/doc"))
            .await
            .unwrap(),
        b"doc, second"
    );
    assert_eq!(usage().await, usage_of(&store));
    fs.abort();
}

#[tokio::test]
async fn a_format_2_tree_keeps_its_own_entry_named_snapshots() {
    let store = Arc::new(MemoryStore::new());
    let crypto = TreeCrypto::Plain;
    let mut pages = Pages {
        store: &store,
        made: HashMap::new(),
    };
    let mine = file("mine", 3, stored_whole(&store, None, b"own").await);
    let own = format::prolly::build(&mut pages, &crypto, vec![mine]).unwrap();
    let mut own_dir = subdir(".snapshots", &own);
    if let EntryKind::Inode(i) = &mut own_dir.kind {
        i.attrs.mode = 0o700;
    }
    let dir = format::prolly::build(&mut pages, &crypto, vec![own_dir]).unwrap();
    // A `pxfs/root/2` node, as a format-2 writer leaves it.
    let root = Root {
        attrs: attrs(0o755),
        xattrs: vec![],
        dir,
        inodes: None,
    }
    .encode(&crypto);
    let root = pages.put(root).unwrap();
    pages.land().await;
    let record = UsageRecord {
        token_id: TOKEN,
        quota: u64::MAX,
        usage: 1,
        files: 1,
        root,
        last_upload: None,
        seq: 1,
        prev: None,
        merged: None,
        encryption: Default::default(),
    };
    store
        .publish_usage(Some(BTNS), &record, None)
        .await
        .unwrap();
    let fs = mount(&store, keys_of(false)).await;
    assert_eq!(listing(&fs, ROOT_INO).await, [".snapshots"]);
    let found = fs.lookup(ROOT_INO, ".snapshots").await.unwrap();
    assert_eq!(found.meta.mode, 0o700);
    assert_eq!(listing(&fs, found.ino).await, ["mine"]);
    fs.abort();
}

#[tokio::test]
async fn a_new_tree_is_format_3_so_the_name_snapshots_is_taken_from_the_start() {
    let store = Arc::new(MemoryStore::new());
    let fs = mount(&store, keys_of(false)).await;
    assert_eq!(
        errno(fs.mkdir(ROOT_INO, ".snapshots", 0o755, 0, 0).await),
        libc::EEXIST
    );
    let view = fs.lookup(ROOT_INO, ".snapshots").await.unwrap();
    assert_eq!(listing(&fs, view.ino).await, Vec::<String>::new());
    assert_eq!(listing(&fs, ROOT_INO).await, Vec::<String>::new());
    fs.abort();
}

#[tokio::test]
async fn a_name_in_a_large_kept_directory_is_read_through_the_pages_on_its_path() {
    let store = Arc::new(MemoryStore::new());
    let crypto = TreeCrypto::Plain;
    let mut pages = Pages {
        store: &store,
        made: HashMap::new(),
    };
    let same = stored_whole(&store, None, b"one").await;
    let mut many: Vec<Entry> = (0..2_000)
        .map(|i| file(&format!("f{i:05}"), 3, same.clone()))
        .collect();
    many.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    let big_dir = format::prolly::build(&mut pages, &crypto, many).unwrap();
    let now = format::prolly::build::<Entry>(&mut pages, &crypto, vec![]).unwrap();
    let kept = Version::new(T0, attrs(0o755), vec![], big_dir.clone(), None, 0).unwrap();
    let history = format::prolly::build(&mut pages, &crypto, vec![kept]).unwrap();
    let root = RootV3 {
        root: Root {
            attrs: attrs(0o755),
            xattrs: vec![],
            dir: now,
            inodes: None,
        },
        t: T0 + 3600 * NS,
        history: Some(history),
    }
    .encode(&crypto)
    .unwrap();
    let root = pages.put(root).unwrap();
    let pages_made = pages.made.len();
    pages.land().await;
    let record = UsageRecord {
        token_id: TOKEN,
        quota: u64::MAX,
        usage: 1,
        files: 0,
        root,
        last_upload: None,
        seq: 1,
        prev: None,
        merged: None,
        encryption: Default::default(),
    };
    store
        .publish_usage(Some(BTNS), &record, None)
        .await
        .unwrap();
    assert!(
        pages_made > 20,
        "the kept directory spans many pages: {pages_made}"
    );
    let fs = mount(&store, keys_of(false)).await;
    let v = walk(&fs, &format!(".snapshots/{}", snapshot_name(T0)))
        .await
        .unwrap();
    let before = store.fetches();
    let one = fs.lookup(v.ino, "f01234").await.unwrap();
    let cost = store.fetches() - before;
    assert!(
        cost <= 3,
        "{cost} pages fetched for one name of {pages_made}"
    );
    assert_eq!(
        read_path(&fs, &format!(".snapshots/{}/f01234", snapshot_name(T0)))
            .await
            .unwrap(),
        b"one"
    );
    assert_eq!(errno(fs.lookup(v.ino, "f99999").await), libc::ENOENT);
    // Listed whole, the name keeps its number.
    let mut all = 0;
    let mut offset = 0;
    loop {
        let batch = fs.readdir(v.ino, offset).await.unwrap();
        let Some(last) = batch.last() else { break };
        offset = last.offset;
        all += batch
            .iter()
            .filter(|e| e.name != b"." && e.name != b"..")
            .count();
    }
    assert_eq!(all, 2_000);
    assert_eq!(fs.lookup(v.ino, "f01234").await.unwrap().ino, one.ino);
    fs.abort();
}

/// A version over one chunk but under the small-file limit (256 KiB) is stored as chunks
/// even when it is closed among small files that go up together in one batch (which add
/// whole objects): found by the model test, where such a file was sometimes stored whole.
#[tokio::test]
async fn a_file_over_one_chunk_closed_among_small_ones_is_stored_as_chunks() {
    for sealed in [false, true] {
        let store = Arc::new(MemoryStore::new());
        let fs = mount(&store, keys_of(sealed)).await;
        for i in 0..8u8 {
            for (name, len) in [
                (format!("mid{i}"), 150_000usize),
                (format!("small{i}"), 900),
            ] {
                let fh = fs
                    .create(ROOT_INO, &name, 0o644, libc::O_RDWR, 0, 0)
                    .await
                    .unwrap()
                    .1;
                // The tail first: not a file written in order (no live upload).
                let data: Vec<u8> = (0..len).map(|j| (j as u8).wrapping_mul(i + 3)).collect();
                fs.write(fh, 100, &data[100..]).await.unwrap();
                fs.write(fh, 0, &data[..100]).await.unwrap();
                fs.release(fh).await.unwrap();
            }
        }
        fs.flush_all().await.unwrap();
        for i in 0..8 {
            let (mid, small) = (format!("mid{i}"), format!("small{i}"));
            assert!(
                is_chunked(&published_entry(&store, sealed, &mid)),
                "{mid} (sealed: {sealed}) is stored as chunks"
            );
            assert!(!is_chunked(&published_entry(&store, sealed, &small)));
        }
        fs.abort();
    }
}
