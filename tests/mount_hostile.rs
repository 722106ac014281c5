//! Hostile nodes (issue #29): a node that serves bytes other than the ones a CID names is
//! caught. Each test writes through a kernel mount on a real `pxfs node`, alters block
//! files in the node's repository as a dishonest or failing node would, and reads again
//! through a fresh cache: what was altered reads as `EIO` (never other bytes), the rest
//! reads as written, and the mount counts the refused blocks. Needs root and /dev/fuse.
//! `pxfs check` of format-3 trees built with the codecs (no mount) is here too, and such a
//! tree's kept versions read through the mount under `.snapshots/`.

#[path = "support/block_store.rs"]
mod block_store;
#[path = "support/format3_tree.rs"]
mod format3_tree;
#[path = "support/node_mount.rs"]
mod node_mount;
#[path = "support/unmount.rs"]
mod unmount;

use std::path::Path;

use block_store::block_file;
use node_mount::{dir, mount, publish_root, require_mount, start_node};
use pxfs::storage::NodeClient;

/// Rewrites a stored block in place, keeping its length: `alter` gets its bytes.
fn tamper(repo: &Path, cid: &str, alter: impl FnOnce(&mut Vec<u8>)) {
    let path = block_file(repo, cid);
    let mut bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let before = bytes.clone();
    alter(&mut bytes);
    assert_eq!(bytes.len(), before.len());
    assert_ne!(bytes, before, "the alteration changed nothing");
    std::fs::write(&path, bytes).unwrap();
}

/// The CIDs a tree node lists in its public `nodes` (docs/FORMAT.md §3.1).
fn listed_nodes(rt: &tokio::runtime::Runtime, client: &NodeClient, cid: &str) -> Vec<String> {
    let bytes = rt.block_on(client.block_get(cid)).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

/// The names in a directory, as `ls` lists them: an error opening or reading it fails.
fn list(dir: &Path) -> std::io::Result<Vec<std::ffi::OsString>> {
    std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect()
}

fn errno_of<T: std::fmt::Debug>(r: std::io::Result<T>) -> Option<i32> {
    match r {
        Ok(v) => panic!(
            "expected an error, read {}",
            format!("{v:?}").chars().take(200).collect::<String>()
        ),
        Err(e) => e.raw_os_error(),
    }
}

/// Writes a small file, a four-leaf file and a subdirectory, alters a block of each on the
/// node, and reads them back through a fresh cache.
fn altered_blocks_read_as_eio(sealed: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let repo = dir(tmp.path(), "repo");
    let node = start_node(&repo);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let key = rt.block_on(node.client.key_gen("token-1")).unwrap();
    let mnt = dir(tmp.path(), "mnt");
    let small = b"a small file of the owner's\n".repeat(40);
    let big: Vec<u8> = (0..(1u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let ok = b"untouched\n".to_vec();

    let m = mount(
        &node.client,
        &key.id,
        &dir(tmp.path(), "cache1"),
        &mnt,
        sealed,
    );
    std::fs::write(mnt.join("small"), &small).unwrap();
    std::fs::write(mnt.join("big"), &big).unwrap();
    std::fs::write(mnt.join("ok"), &ok).unwrap();
    std::fs::create_dir(mnt.join("sub")).unwrap();
    std::fs::write(mnt.join("sub/inner-file"), b"inner").unwrap();
    m.unmount();
    let m = mount(
        &node.client,
        &key.id,
        &dir(tmp.path(), "cache-read"),
        &mnt,
        sealed,
    );
    let small_cid = xattr(&mnt.join("small"), "user.pxfs.cid");
    let big_cid = xattr(&mnt.join("big"), "user.pxfs.cid");
    let ok_cid = xattr(&mnt.join("ok"), "user.pxfs.cid");
    let root = xattr(&mnt, "user.pxfs.root");
    m.unmount();
    let crypto = crypto(sealed);
    // `pxfs check` of the tree as written: intact, read or asked.
    for read_data in [false, true] {
        let (sum, damage) = check(&rt, &node.client, &root, &crypto, read_data);
        assert_eq!(damage, Vec::<(String, String)>::new());
        assert!(sum.intact(), "{sum:?}");
        assert_eq!((sum.files, sum.directories), (4, 2), "{sum:?}");
    }
    assert!(small_cid.starts_with("bafk"), "one raw block: {small_cid}");
    assert!(
        big_cid.starts_with("bafk"),
        "a chunk table's page: {big_cid}"
    );

    // The top page of the sNFT root directory lists the page of `sub`.
    let top = listed_nodes(&rt, &node.client, &root);
    let top_page = top.last().unwrap().clone();
    // (Besides it, the big file's chunk table: a chunked file names its table among the
    // nodes, docs/FORMAT.md §12.1.)
    let sub_page = listed_nodes(&rt, &node.client, &top_page)
        .into_iter()
        .find(|c| *c != big_cid)
        .unwrap();
    // 1 MiB is stored as eight 128 KiB chunks (docs/FORMAT.md §13), one table page.
    let table = rt.block_on(node.client.block_get(&big_cid)).unwrap();
    let chunks = match pxfs::format::page::decode::<pxfs::format::chunks::ChunkRef>(&table, &crypto)
        .unwrap()
    {
        pxfs::format::Page::Leaf(chunks) => chunks,
        pxfs::format::Page::Branch(_) => panic!("a 1 MiB file's table is one leaf"),
    };
    assert_eq!(chunks.len(), 8, "eight chunks");
    let third_chunk = chunks.iter().find(|c| c.index() == 2).unwrap().cid.clone();

    // What a dishonest node serves: a content byte changed, a leaf of the big file
    // changed, and the subdirectory's page with a name (plaintext) or a byte (sealed)
    // changed.
    let flip = |b: &mut Vec<u8>| b[10] ^= 0x20;
    tamper(&repo, &small_cid, flip);
    tamper(&repo, &third_chunk, flip);
    if sealed {
        tamper(&repo, &sub_page, |b| {
            let at = b.len() - 20;
            b[at] = if b[at] == b'A' { b'B' } else { b'A' };
        });
    } else {
        tamper(&repo, &sub_page, |b| {
            let text = String::from_utf8(b.clone()).unwrap();
            *b = text.replace("inner-file", "other-file").into_bytes();
        });
    }

    // `pxfs check --read-data` names each altered file, and the directory whose page was
    // altered; the untouched file is not named.
    let (sum, damage) = check(&rt, &node.client, &root, &crypto, true);
    assert_eq!(
        damage,
        vec![
            ("/big".to_string(), "corrupt".to_string()),
            ("/small".to_string(), "corrupt".to_string()),
            ("/sub".to_string(), "corrupt".to_string()),
        ],
        "{sum:?}"
    );
    assert_eq!(sum.corrupt, 3, "{sum:?}");
    assert!(!sum.intact());
    // Without --read-data the page is still read (its names are needed), so its
    // alteration is found; content blocks are only asked for.
    let (_, damage) = check(&rt, &node.client, &root, &crypto, false);
    assert!(
        damage.contains(&("/sub".to_string(), "corrupt".to_string())),
        "{damage:?}"
    );

    // A node that serves a genuine block of the tree in another's place: chunk 4's block
    // holds chunk 5's bytes (a swapped chunk; a replayed one, an older version's chunk at
    // the same index, is the same case: bytes that are not the CID's).
    let chunk_cid = |i: u64| chunks.iter().find(|c| c.index() == i).unwrap().cid.clone();
    let fifth = std::fs::read(block_file(&repo, &chunk_cid(5))).unwrap();
    std::fs::write(block_file(&repo, &chunk_cid(4)), &fifth).unwrap();

    let before = pxfs::integrity::corrupt_blocks();
    let m = mount(
        &node.client,
        &key.id,
        &dir(tmp.path(), "cache2"),
        &mnt,
        sealed,
    );
    assert_eq!(
        std::fs::read(mnt.join("ok")).unwrap(),
        ok,
        "untouched reads back"
    );
    assert_eq!(
        errno_of(std::fs::read(mnt.join("small"))),
        Some(libc::EIO),
        "altered content"
    );
    // The chunks before the altered one read; the range over it does not.
    let mut f = std::fs::File::open(mnt.join("big")).unwrap();
    // (200 KiB: the first two 128 KiB chunks.)
    let mut first = vec![0u8; 200 << 10];
    std::io::Read::read_exact(&mut f, &mut first).unwrap();
    drop(f);
    assert_eq!(first, big[..200 << 10]);
    assert_eq!(
        errno_of(std::fs::read(mnt.join("big"))),
        Some(libc::EIO),
        "altered chunk"
    );
    let chunk_read = |i: u64| {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::open(mnt.join("big")).unwrap();
        let mut buf = vec![0u8; 4096];
        f.read_exact_at(&mut buf, (i << 17) + 1000).map(|()| buf)
    };
    assert_eq!(errno_of(chunk_read(4)), Some(libc::EIO), "a swapped chunk");
    let at = (5 << 17) + 1000;
    assert_eq!(
        chunk_read(5).unwrap(),
        big[at..at + 4096],
        "the chunk it copied"
    );
    assert_eq!(
        errno_of(list(&mnt.join("sub"))),
        Some(libc::EIO),
        "altered page"
    );
    if !sealed {
        // Whatever happened, the altered name must never be served.
        assert!(!mnt.join("sub/other-file").exists());
    }
    let status = m.fs.status();
    assert!(
        status.node.corrupt_blocks >= before + 4,
        "refused blocks are counted: {} then {}",
        before,
        status.node.corrupt_blocks
    );
    m.unmount();

    // A content block file removed from the node's repository: `pxfs check` (presence
    // only) names the file as missing.
    std::fs::remove_file(block_file(&repo, &ok_cid)).unwrap();
    let (sum, damage) = check(&rt, &node.client, &root, &crypto, false);
    assert!(
        damage.contains(&("/ok".to_string(), "missing".to_string())),
        "{damage:?}"
    );
    assert_eq!(sum.missing, 1, "{sum:?}");
}

fn crypto(sealed: bool) -> pxfs::format::TreeCrypto {
    match sealed {
        true => pxfs::format::TreeCrypto::sealed(&pxfs::format::DataKey::from_bytes([42; 32])),
        false => pxfs::format::TreeCrypto::Plain,
    }
}

/// What `pxfs check` reports of the tree under `root`: its summary, and each damage as
/// (path, "missing" | "corrupt" | "unreadable"), sorted.
fn check(
    rt: &tokio::runtime::Runtime,
    client: &NodeClient,
    root: &str,
    crypto: &pxfs::format::TreeCrypto,
    read_data: bool,
) -> (pxfs::check::Summary, Vec<(String, String)>) {
    use pxfs::check::{Event, Options, Problem};
    let opts = Options {
        read_data,
        ..Options::default()
    };
    let mut damage = Vec::new();
    let mut on = |e: Event<'_>| {
        if let Event::Damaged(d) = e {
            let what = match d.problem {
                Problem::Missing(_) => "missing",
                Problem::Corrupt => "corrupt",
                Problem::Invalid(_) => "unreadable",
            };
            damage.push((d.path.clone(), what.to_string()));
        }
    };
    let sum = rt
        .block_on(pxfs::check::check_tree(
            client, root, crypto, &opts, &mut on,
        ))
        .unwrap();
    damage.sort();
    (sum, damage)
}

#[test]
fn altered_plaintext_blocks_read_as_eio_through_the_mount() {
    require_mount();
    altered_blocks_read_as_eio(false);
}

#[test]
fn altered_encrypted_blocks_read_as_eio_through_the_mount() {
    require_mount();
    altered_blocks_read_as_eio(true);
}

fn xattr(p: &Path, name: &str) -> String {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and a buffer of the given length.
    let len = unsafe { libc::getxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(len >= 0, "getxattr {name}");
    String::from_utf8(buf[..len as usize].to_vec()).unwrap()
}

/// The cost of checking every block: a cold read of 256 MiB through the kernel mount with
/// a fresh cache (`cargo test --test mount_hostile cold_read -- --ignored --nocapture`;
/// the figure is printed, BENCHMARKS.md has the comparison).
#[test]
#[ignore = "a measurement, not a check"]
fn cold_read_of_256_mib() {
    require_mount();
    let tmp = tempfile::tempdir().unwrap();
    let node = start_node(&dir(tmp.path(), "repo"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let key = rt.block_on(node.client.key_gen("token-1")).unwrap();
    let mnt = dir(tmp.path(), "mnt");
    let src = tmp.path().join("big");
    let data: Vec<u8> = (0..(256u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&src, &data).unwrap();
    drop(data);
    for sealed in [false, true] {
        let m = mount(
            &node.client,
            &key.id,
            &dir(tmp.path(), "c-write"),
            &mnt,
            sealed,
        );
        std::fs::copy(&src, mnt.join(format!("big-{sealed}"))).unwrap();
        m.unmount();
        let _ = std::fs::remove_dir_all(tmp.path().join("c-write"));
        for run in 0..3 {
            let cache = dir(tmp.path(), &format!("c-read-{sealed}-{run}"));
            let m = mount(&node.client, &key.id, &cache, &mnt, sealed);
            let started = std::time::Instant::now();
            let mut f = std::fs::File::open(mnt.join(format!("big-{sealed}"))).unwrap();
            let n = std::io::copy(&mut f, &mut std::io::sink()).unwrap();
            let secs = started.elapsed().as_secs_f64();
            drop(f);
            assert_eq!(n, 256 << 20);
            eprintln!(
                "cold read, {}: {:.1} MiB/s ({secs:.2} s)",
                if sealed { "encrypted" } else { "plaintext" },
                256.0 / secs
            );
            m.unmount();
            let _ = std::fs::remove_dir_all(&cache);
        }
    }
}

/// Every damage `pxfs check` reports of the tree under `root`, as found.
fn damages(
    rt: &tokio::runtime::Runtime,
    client: &NodeClient,
    root: &str,
    crypto: &pxfs::format::TreeCrypto,
) -> Vec<pxfs::check::Damage> {
    let mut found = Vec::new();
    let mut on = |e: pxfs::check::Event<'_>| {
        if let pxfs::check::Event::Damaged(d) = e {
            found.push(d.clone());
        }
    };
    rt.block_on(pxfs::check::check_tree(
        client,
        root,
        crypto,
        &pxfs::check::Options::default(),
        &mut on,
    ))
    .unwrap();
    found
}

/// A format-3 tree (docs/FORMAT.md §12–§14), built with the codecs and put on a node: two
/// kept versions and the current tree share pages, contents and chunks; `/big` is chunked
/// with holes and its chunk 2 rewritten since the second version; `/sparse` is 1 GiB of
/// holes. `pxfs check` checks the current tree and every kept version, each distinct block
/// once; a missing chunk or content is named by path in each version that holds it
/// (`/.snapshots/<name>/…`); `--repair` puts chunks back from a replica.
fn format3_tree_is_checked_with_every_kept_version(sealed: bool) {
    use format3_tree::{CHUNK_SIZE, NS, T0, Tree3, subdir};
    use pxfs::check::{Repair, Sources};
    let mut t = Tree3::new(sealed);
    let (a, a_cid) = t.file("a", 1, 5_000);
    let (b1, b1_cid) = t.file("b", 2, 70_000);
    let (b2, _) = t.file("b", 3, 200_000);
    let (d, _) = t.file("d", 4, 1_000);
    let big_size = 4 * CHUNK_SIZE + 1_000;
    let k0 = t.chunk(0, big_size, 10);
    let k2 = t.chunk(2, big_size, 11);
    let k2_new = t.chunk(2, big_size, 12);
    let k4 = t.chunk(4, big_size, 13);
    let (big1, _) = t.chunked("big", big_size, vec![k0.clone(), k2.clone(), k4.clone()]);
    let (big2, _) = t.chunked("big", big_size, vec![k0.clone(), k2_new, k4]);
    let (sparse, _) = t.chunked("sparse", 1 << 30, vec![]);
    let sub = t.dir(vec![d]);
    let dir1 = t.dir(vec![a.clone(), b1]);
    let dir2 = t.dir(vec![a.clone(), b2.clone(), subdir("sub", &sub), big1]);
    let dir3 = t.dir(vec![a, b2, subdir("sub", &sub), big2, sparse]);
    let (t1, t2) = (T0 + 600 * NS, T0 + 1200 * NS);
    let history = vec![t.version(t1, &dir1), t.version(t2, &dir2)];
    let root = t.root(T0 + 1800 * NS, &dir3, history);
    let v1 = format!("/.snapshots/{}", pxfs::format::history::snapshot_name(t1));
    let v2 = format!("/.snapshots/{}", pxfs::format::history::snapshot_name(t2));

    let tmp = tempfile::tempdir().unwrap();
    let repo = dir(tmp.path(), "repo");
    let node = start_node(&repo);
    let replica = start_node(&dir(tmp.path(), "replica"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    t.store_on(&rt, &node.client);
    t.store_on(&rt, &replica.client);
    let crypto = crypto(sealed);
    // Every object the root reaches, each once: the root, the history leaf, 4 directory
    // pages, 3 chunk tables (one the empty leaf of `/sparse`), 4 contents and 4 chunks.
    for read_data in [false, true] {
        let (sum, damage) = check(&rt, &node.client, &root, &crypto, read_data);
        assert_eq!(damage, Vec::<(String, String)>::new());
        assert!(sum.intact(), "{sum:?}");
        assert_eq!(sum.versions, 2, "{sum:?}");
        assert_eq!(sum.blocks, 1 + 1 + 4 + 3 + 4 + 4, "{sum:?}");
    }

    // The node loses a chunk only the second version's `/big` holds, a chunk both `/big`s
    // hold, and the content of the first version's `/b`.
    for cid in [&k2.cid, &k0.cid, &b1_cid] {
        std::fs::remove_file(block_file(&repo, cid)).unwrap();
    }
    let (sum, damage) = check(&rt, &node.client, &root, &crypto, false);
    let missing = |p: &str| (p.to_string(), "missing".to_string());
    let mut expected = vec![
        missing("/big"),
        missing(&format!("{v1}/b")),
        missing(&format!("{v2}/big")),
    ];
    expected.sort();
    assert_eq!(damage, expected);
    assert_eq!(sum.missing, 3, "each missing block counted once: {sum:?}");
    assert!(!damage.contains(&missing("/a")), "{a_cid} is intact");

    // `--repair`: each missing block back from the replica, once; then intact.
    let replicas = [("replica".to_string(), replica.client.clone())];
    let sources = Sources {
        cache: None,
        replicas: &replicas,
    };
    let mut done = std::collections::HashMap::new();
    for d in damages(&rt, &node.client, &root, &crypto) {
        let outcome = rt.block_on(pxfs::check::repair(&node.client, &d, &sources, &mut done));
        assert!(
            matches!(&outcome, Repair::Repaired { from } if from == &["replica"]),
            "{}: {outcome:?}",
            d.path
        );
    }
    assert_eq!(done.len(), 3, "three blocks put back: {done:?}");
    for read_data in [false, true] {
        let (sum, damage) = check(&rt, &node.client, &root, &crypto, read_data);
        assert_eq!(damage, Vec::<(String, String)>::new(), "after the repair");
        assert!(sum.intact(), "{sum:?}");
    }

    // The history table's page lost: the versions cannot be checked, and say so; the
    // current tree still is.
    let history_leaf = pxfs::format::root::RootV3::decode(&t.objects.0[&root], &t.crypto)
        .unwrap()
        .root
        .history
        .unwrap();
    std::fs::remove_file(block_file(&repo, &history_leaf)).unwrap();
    let found = damages(&rt, &node.client, &root, &crypto);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].path.as_str(), found[0].part, found[0].cid.as_str()),
        (
            "/.snapshots",
            pxfs::check::Part::History,
            history_leaf.as_str()
        )
    );
    let (sum, _) = check(&rt, &node.client, &root, &crypto, false);
    assert_eq!((sum.versions, sum.files), (0, 5), "{sum:?}");
}

#[test]
fn a_plaintext_format3_tree_is_checked_with_every_kept_version() {
    format3_tree_is_checked_with_every_kept_version(false);
}

#[test]
fn an_encrypted_format3_tree_is_checked_with_every_kept_version() {
    format3_tree_is_checked_with_every_kept_version(true);
}

/// Chunk tables a node cannot pass off: a table naming a chunk past its file's end is
/// unreadable (a table cannot lengthen a file, §13.2), and in an encrypted tree a chunk
/// listed at another index than it was sealed for hashes right but does not open there
/// (§13.3): `--read-data` reports it unreadable.
#[test]
fn chunks_out_of_place_are_unreadable() {
    use format3_tree::{CHUNK_SIZE, T0, Tree3};
    let tmp = tempfile::tempdir().unwrap();
    let node = start_node(&dir(tmp.path(), "repo"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    for sealed in [false, true] {
        let mut t = Tree3::new(sealed);
        let size = 3 * CHUNK_SIZE;
        // Chunk 1 sealed as chunk 1, listed at 0; chunk 5 of a three-chunk file.
        let moved = t.chunk_at(0, 1, size, 1);
        let (moved, _) = t.chunked("moved", size, vec![moved]);
        let past = t.chunk(2, 6 * CHUNK_SIZE, 2);
        let past = pxfs::format::chunks::ChunkRef::new(5, past.cid, past.salt);
        let (long, _) = t.chunked("long", size, vec![past]);
        let top = t.dir(vec![moved, long]);
        let root = t.root(T0, &top, vec![]);
        t.store_on(&rt, &node.client);
        let crypto = crypto(sealed);
        let unreadable = |p: &str| (p.to_string(), "unreadable".to_string());
        let (_, asked) = check(&rt, &node.client, &root, &crypto, false);
        assert_eq!(asked, vec![unreadable("/long")], "sealed: {sealed}");
        let (_, read) = check(&rt, &node.client, &root, &crypto, true);
        let expected = if sealed {
            vec![unreadable("/long"), unreadable("/moved")]
        } else {
            // A plaintext chunk carries nothing of its place but its length.
            vec![unreadable("/long")]
        };
        assert_eq!(read, expected, "sealed: {sealed}");
    }
}

/// A node of its own holding `t`'s objects, `root` published as the token-1 sNFT's tree.
struct Published {
    tmp: tempfile::TempDir,
    node: node_mount::Node,
    rt: tokio::runtime::Runtime,
    /// The sNFT's BTNS name.
    key: String,
}

fn published(t: &format3_tree::Tree3, root: &str) -> Published {
    let tmp = tempfile::tempdir().unwrap();
    let node = start_node(&dir(tmp.path(), "repo"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let key = rt.block_on(node.client.key_gen("token-1")).unwrap().id;
    t.store_on(&rt, &node.client);
    publish_root(&node.client, &key, &dir(tmp.path(), "writer"), root, 1);
    Published { tmp, node, rt, key }
}

/// The `.snapshots/` view through the kernel (docs/FORMAT.md §14.1): a format-3 tree with
/// a kept version, built with the codecs on a node and mounted from an empty cache. `ls` of
/// the sNFT root does not show `.snapshots`, `ls .snapshots` lists the version, a file
/// deleted since and one overwritten since read as the version had them (a chunked one
/// with its holes), and `touch`, `mkdir`, `rm` and writes under it fail with `EROFS`.
#[test]
fn a_kept_version_reads_through_the_kernel_under_snapshots() {
    use format3_tree::{CHUNK_SIZE, NS, T0, Tree3, pattern};
    require_mount();
    let mut t = Tree3::new(false);
    let (gone, _) = t.file("gone", 1, 3_000);
    let (doc_then, _) = t.file("doc", 2, 2_000);
    let (doc_now, _) = t.file("doc", 3, 2_500);
    let big_size = 3 * CHUNK_SIZE;
    let middle = t.chunk(1, big_size, 4);
    let (big, _) = t.chunked("big", big_size, vec![middle]);
    let then = t.dir(vec![gone, doc_then, big]);
    let now = t.dir(vec![doc_now]);
    let kept = T0 + 600 * NS;
    let history = vec![t.version(kept, &then)];
    let root = t.root(T0 + 1200 * NS, &now, history);
    let name = pxfs::format::history::snapshot_name(kept);

    let Published { tmp, node, key, .. } = published(&t, &root);
    let mnt = dir(tmp.path(), "mnt");
    let m = mount(&node.client, &key, &dir(tmp.path(), "cache"), &mnt, false);

    assert_eq!(list(&mnt).unwrap(), ["doc"], "the view is not listed");
    let snaps = mnt.join(".snapshots");
    assert!(snaps.is_dir());
    assert_eq!(list(&snaps).unwrap(), [name.as_str()]);
    let v = snaps.join(&name);
    let mut listed = list(&v).unwrap();
    listed.sort();
    assert_eq!(listed, ["big", "doc", "gone"]);
    assert_eq!(std::fs::read(v.join("gone")).unwrap(), pattern(1, 3_000));
    assert_eq!(std::fs::read(v.join("doc")).unwrap(), pattern(2, 2_000));
    assert_eq!(std::fs::read(mnt.join("doc")).unwrap(), pattern(3, 2_500));
    let big = std::fs::read(v.join("big")).unwrap();
    let c = CHUNK_SIZE as usize;
    assert_eq!(big.len(), 3 * c);
    assert!(big[..c].iter().chain(&big[2 * c..]).all(|b| *b == 0));
    assert_eq!(big[c..2 * c], pattern(4, CHUNK_SIZE)[..]);

    let erofs = Some(libc::EROFS);
    assert_eq!(errno_of(std::fs::File::create(v.join("new"))), erofs);
    assert_eq!(errno_of(std::fs::write(v.join("doc"), b"x")), erofs);
    assert_eq!(errno_of(std::fs::create_dir(v.join("d"))), erofs);
    assert_eq!(errno_of(std::fs::remove_file(v.join("doc"))), erofs);
    assert_eq!(
        errno_of(std::fs::rename(v.join("doc"), v.join("doc2"))),
        erofs
    );
    assert_eq!(errno_of(std::fs::create_dir(snaps.join("x"))), erofs);
    assert_eq!(std::fs::read(v.join("doc")).unwrap(), pattern(2, 2_000));
    m.unmount();
}

/// Issue #39: a v2 tree's file (one whole object) reads through the kernel from an empty
/// cache, and a 4 KiB change in place rewrites it into chunks (its CID now names a chunk
/// table), which a fresh cache reads back with the change.
#[test]
fn a_v2_file_is_read_then_rewritten_into_chunks() {
    use format3_tree::{Tree3, pattern};
    use std::os::unix::fs::FileExt;
    require_mount();
    let len = 600_000u64;
    let mut t = Tree3::new(false);
    let (old, whole) = t.file("old", 5, len);
    let top = t.dir(vec![old]);
    let root = t.root_v2(&top);
    let Published { tmp, node, rt, key } = published(&t, &root);
    let mnt = dir(tmp.path(), "mnt");

    let m = mount(&node.client, &key, &dir(tmp.path(), "cache1"), &mnt, false);
    let mut want = pattern(5, len);
    assert_eq!(
        std::fs::read(mnt.join("old")).unwrap(),
        want,
        "the v2 file reads"
    );
    assert_eq!(xattr(&mnt.join("old"), "user.pxfs.cid"), whole);
    let patch = pattern(6, 4096);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(mnt.join("old"))
        .unwrap();
    f.write_all_at(&patch, 300_000).unwrap();
    f.sync_all().unwrap();
    drop(f);
    want[300_000..304_096].copy_from_slice(&patch);
    m.unmount();

    let m = mount(&node.client, &key, &dir(tmp.path(), "cache2"), &mnt, false);
    assert_eq!(
        std::fs::read(mnt.join("old")).unwrap(),
        want,
        "the new form reads"
    );
    let cid = xattr(&mnt.join("old"), "user.pxfs.cid");
    let table = rt.block_on(node.client.block_get(&cid)).unwrap();
    let crypto = pxfs::format::TreeCrypto::Plain;
    match pxfs::format::page::decode::<pxfs::format::chunks::ChunkRef>(&table, &crypto) {
        Ok(pxfs::format::Page::Leaf(chunks)) => assert_eq!(chunks.len(), 5, "five chunks"),
        other => panic!("the file's CID names no chunk table leaf: {other:?}"),
    }
    m.unmount();
}
