//! Quota, overdue and the published BTNS record, seen through a real kernel mount.

mod support;

use std::io::Write;
use std::time::Duration;

use support::{TestDevnet, TestMount, advance_chain_time, wait_until};

fn errno_of(r: std::io::Result<impl Sized>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

fn xattr_u64(path: &std::path::Path, name: &str) -> u64 {
    let out = support::sh(&format!(
        "getfattr --only-values -n {name} {}",
        path.display()
    ));
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number: {out:?}"))
}

fn statvfs(path: &std::path::Path) -> libc::statvfs {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    st
}

#[test]
fn filling_to_exactly_the_quota_works_and_one_byte_more_fails_with_edquot() {
    let quota: u64 = 4 << 20;
    let devnet = TestDevnet::start(&["--quota", &quota.to_string()]);
    let mount = TestMount::mount(&devnet.config(), &[]);
    let token = mount.token(devnet.token());

    let st = statvfs(&token);
    assert_eq!(
        st.f_blocks * st.f_frsize,
        quota,
        "df total is the chain's quota"
    );

    // The manifests count too (docs/FORMAT.md §7): with the empty file committed they stay
    // as they are while it is written, so its content may take exactly the rest.
    let mut f = std::fs::File::create(token.join("fill")).unwrap();
    f.sync_all().unwrap();
    let manifests = xattr_u64(&token, "user.pxfs.usage");
    assert!(manifests > 0 && manifests < 4096, "{manifests}");
    // The tree is encrypted (the default): a file of n bytes over one chunk stores n + 16
    // per 128 KiB chunk (docs/FORMAT.md §13), and that is what the quota counts.
    let room = quota - manifests;
    let content = (0..=room).rev().find(|n| stored(*n) <= room).unwrap();
    assert_eq!(stored(content), room, "an exact fill exists");
    f.write_all(&vec![7u8; (content - 10) as usize]).unwrap();
    f.write_all(&[8u8; 10]).unwrap();
    assert_eq!(xattr_u64(&token, "user.pxfs.usage"), quota);

    // One byte more: EDQUOT, and nothing changed.
    assert_eq!(errno_of(f.write_all(&[9u8])), Some(libc::EDQUOT));
    assert_eq!(
        errno_of(std::fs::write(token.join("another"), b"x")),
        Some(libc::EDQUOT),
    );
    // A length that fits the quota but not the room left: EDQUOT; one no quota of this
    // sNFT could ever hold: EFBIG, as POSIX says for a length past the largest file size.
    assert_eq!(errno_of(f.set_len(content + 1)), Some(libc::EDQUOT));
    assert_eq!(errno_of(f.set_len(quota + 1)), Some(libc::EFBIG));
    assert_eq!(errno_of(f.set_len(999_999_999_999_999)), Some(libc::EFBIG));
    drop(f);
    assert_eq!(
        std::fs::metadata(token.join("fill")).unwrap().len(),
        content
    );
    // Committing its entry (now with a CID) may grow the manifest past the quota: names
    // are not refused, and the sNFT stays full.
    assert!(xattr_u64(&token, "user.pxfs.usage") >= quota);
    let st = statvfs(&token);
    assert_eq!(st.f_bfree, 0, "df shows the sNFT full");

    // Deleting frees the space again; df agrees with the usage attribute, which is what
    // the oracle measures once committed.
    std::fs::remove_file(token.join("fill")).unwrap();
    std::fs::write(token.join("small"), vec![1u8; 10_000]).unwrap();
    std::fs::File::open(&token).unwrap().sync_all().unwrap();
    let usage = xattr_u64(&token, "user.pxfs.usage");
    let root = support::sh(&format!(
        "getfattr --only-values -n user.pxfs.root {}",
        token.display()
    ));
    let client = pxfs::storage::NodeClient::from_url(&devnet.node_url(), "/api/v0");
    let measured = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(pxfs::oracle::measure_root(
            &client,
            root.trim(),
            &pxfs::oracle::Limits::default(),
        ))
        .unwrap();
    assert_eq!(
        measured.usage - measured.manifest_bytes,
        pxfs::format::seal::sealed_len(10_000)
    );
    assert_eq!(usage, measured.usage);
    let st = statvfs(&token);
    let used = (st.f_blocks - st.f_bfree) * st.f_frsize;
    assert!(
        used.abs_diff(usage) < st.f_frsize,
        "df used {used} vs usage {usage}"
    );
}

/// Near the quota a write that does not fit whole writes what fits and returns the short
/// count, as a local filesystem does; the next write gets EDQUOT. A copy in 8 MiB writes
/// fills the sNFT to within 16 KiB of its quota.
#[test]
fn a_write_past_the_quota_is_cut_short_and_the_next_one_fails_with_edquot() {
    let quota: u64 = 20 << 20;
    let devnet = TestDevnet::start(&["--quota", &quota.to_string()]);
    let mount = TestMount::mount(&devnet.config(), &[]);
    let token = mount.token(devnet.token());
    let path = token.join("fill");
    let f = std::fs::File::create(&path).unwrap();
    let block = vec![5u8; 8 << 20];
    let mut offset = 0u64;
    let mut writes = Vec::new();
    let refused = loop {
        // SAFETY: a valid descriptor and a buffer of the given length.
        let n = unsafe {
            libc::pwrite(
                std::os::fd::AsRawFd::as_raw_fd(&f),
                block.as_ptr().cast(),
                block.len(),
                offset as libc::off_t,
            )
        };
        if n < 0 {
            break std::io::Error::last_os_error();
        }
        writes.push(n);
        offset += n as u64;
        assert!(
            writes.len() < 10,
            "the quota never stopped the writes: {writes:?}"
        );
    };
    assert_eq!(
        refused.raw_os_error(),
        Some(libc::EDQUOT),
        "after {writes:?}"
    );
    let (last, full) = writes.split_last().unwrap();
    assert!(
        full.iter().all(|n| *n as usize == block.len()) && (*last as usize) < block.len(),
        "whole writes, then one short write: {writes:?}"
    );
    let usage = xattr_u64(&token, "user.pxfs.usage");
    assert!(
        usage <= quota && quota - usage < 16 << 10,
        "filled to {usage} of {quota}"
    );
    f.sync_all().unwrap();
    drop(f);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), offset);
    // What was written is what reads back, also after a remount.
    drop(mount);
    let mount = TestMount::mount(&devnet.config(), &[]);
    let back = std::fs::read(mount.token(devnet.token()).join("fill")).unwrap();
    assert_eq!(back.len() as u64, offset);
    assert!(back.iter().all(|b| *b == 5));
}

#[test]
fn an_overdue_token_refuses_new_data_with_eacces_but_reads_and_deletes_work() {
    let devnet = TestDevnet::start(&["--sync-interval", "3600"]);
    let mount = TestMount::mount(&devnet.config(), &[]);
    let token = mount.token(devnet.token());
    std::fs::write(token.join("kept"), b"written before the deadline").unwrap();
    std::fs::write(token.join("doomed"), b"to be deleted").unwrap();
    std::fs::create_dir(token.join("dir")).unwrap();

    advance_chain_time(&devnet.rpc_url(), 3700);
    wait_until(
        "the mount to notice the token is overdue",
        Duration::from_secs(20),
        || errno_of(std::fs::write(token.join("probe"), b"x")) == Some(libc::EACCES),
    );

    assert_eq!(
        errno_of(std::fs::File::create(token.join("new"))),
        Some(libc::EACCES)
    );
    assert_eq!(
        errno_of(std::fs::create_dir(token.join("newdir"))),
        Some(libc::EACCES)
    );
    assert_eq!(
        errno_of(
            std::fs::OpenOptions::new()
                .append(true)
                .open(token.join("kept"))
        ),
        Some(libc::EACCES)
    );
    assert_eq!(
        errno_of(std::os::unix::fs::symlink("kept", token.join("ln"))),
        Some(libc::EACCES)
    );
    // Reads, listing, deletes and statfs still work.
    assert_eq!(
        std::fs::read(token.join("kept")).unwrap(),
        b"written before the deadline"
    );
    assert!(std::fs::read_dir(&token).unwrap().count() >= 3);
    std::fs::remove_file(token.join("doomed")).unwrap();
    std::fs::remove_dir(token.join("dir")).unwrap();
    let st = statvfs(&token);
    assert_eq!(st.f_bavail, 0, "no space is available while overdue");
}

#[test]
fn the_btns_record_after_a_copy_names_a_usage_document_whose_root_walks_to_the_tree() {
    let devnet = TestDevnet::start(&[]);
    let mut mount = TestMount::mount(&devnet.config(), &[]);
    let token = mount.token(devnet.token());
    let src = tempfile::tempdir().unwrap();
    support::generate_tree(src.path(), 9, 50, 300_000);
    support::sh(&format!(
        "cp -a {}/. {}/c",
        src.path().display(),
        token.display()
    ));
    mount.unmount(); // drains and commits

    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = pxfs::storage::NodeClient::from_url(&devnet.node_url(), "/api/v0");
    let btns = devnet.info["btns_names"][0].as_str().unwrap().to_string();
    let (_cid, doc) = rt.block_on(pxfs::btns::resolve(&client, &btns)).unwrap();

    // Walk the tree from the root node: the file sizes sum to the published usage, and the
    // names under c/ are the copied tree's.
    let mut total = 0u64;
    let mut files = 0u64;
    let mut seen = Vec::new();
    let mut stored = 0u64;
    let crypto = support::devnet_crypto(&devnet, &doc);
    for (path, kind, size, _) in support::node_tree(&rt, &client, doc.root(), &crypto) {
        if kind == "file" {
            total += size;
            // Over one chunk: chunked, a tag per 128 KiB chunk (FORMAT.md §13); else one
            // sealed object, a tag per 262,128 bytes (§6.2).
            stored += match size > pxfs::format::chunks::CHUNK {
                true => size + 16 * pxfs::format::chunks::chunk_count(size),
                false => pxfs::format::seal::sealed_len(size),
            };
            files += 1;
        }
        seen.push(path);
    }
    assert!(
        crypto.is_sealed(),
        "the devnet's sNFT is encrypted by default"
    );
    let local_bytes: u64 = walk_sizes(src.path());
    assert_eq!(total, local_bytes, "the manifests list the bytes copied");
    // The published usage is what the oracle measures (docs/FORMAT.md §7): the distinct
    // contents plus the manifests.
    let measured = rt
        .block_on(pxfs::oracle::measure_root(
            &client,
            doc.root(),
            &pxfs::oracle::Limits::default(),
        ))
        .unwrap();
    assert_eq!(
        doc.usage(),
        measured.usage,
        "the usage document claims the measured figure"
    );
    // Contents count as stored, tags included.
    assert!(measured.usage - measured.manifest_bytes <= stored);
    assert!(files > 50);
    assert_eq!(
        doc.files(),
        None,
        "an encrypted tree's document names no file count"
    );
    assert!(seen.contains(&"/c/big.bin".to_string()), "{seen:?}");
    assert!(seen.contains(&"/c/d0/sub0/file-00000.dat".to_string()));
}

fn walk_sizes(p: &std::path::Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        let m = std::fs::symlink_metadata(e.path()).unwrap();
        if m.is_dir() {
            total += walk_sizes(&e.path());
        } else if m.is_file() {
            total += m.len();
        }
    }
    total
}

/// What an encrypted tree stores for a file of `n` bytes: chunked over one chunk (a tag per
/// chunk, docs/FORMAT.md §13.1), one sealed object below (§6.2).
fn stored(n: u64) -> u64 {
    match n > pxfs::format::chunks::CHUNK {
        true => n + 16 * pxfs::format::chunks::chunk_count(n),
        false => pxfs::format::seal::sealed_len(n),
    }
}
