//! The mount on a real `pxfs node` (no chain): content, manifests and the usage document
//! go through the storage client, reads through the chunk cache. A fresh cache finds the
//! tree again by the token's BTNS name. Needs root and /dev/fuse.

#[path = "support/node_mount.rs"]
mod node_mount;
#[path = "support/proxy.rs"]
mod proxy;
#[path = "support/unmount.rs"]
mod unmount;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use node_mount::{dir, mount, mount_with, require_mount, start_node};

fn sh(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_tree_copied_in_comes_back_from_the_node_with_a_fresh_cache() {
    require_mount();
    let tmp = tempfile::tempdir().unwrap();
    let node = start_node(&dir(tmp.path(), "repo"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let key = rt.block_on(node.client.key_gen("token-1")).unwrap();
    let (src, mnt) = (dir(tmp.path(), "src"), dir(tmp.path(), "mnt"));
    let files = 2000;
    for i in 0..files {
        let d = dir(&src, &format!("d{}", i % 10));
        std::fs::write(d.join(format!("f{i}")), format!("small file {i}\n")).unwrap();
    }
    // Bytes that never repeat a 128 KiB chunk (identical chunks of a plaintext tree are
    // stored, and counted, once).
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let big: Vec<u8> = (0..(8u32 << 20))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(src.join("big"), &big).unwrap();
    std::os::unix::fs::symlink("big", src.join("link")).unwrap();

    let m = mount(
        &node.client,
        &key.id,
        &dir(tmp.path(), "cache1"),
        &mnt,
        false,
    );
    let started = Instant::now();
    sh(Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", src.display()))
        .arg(&mnt));
    let copied = started.elapsed();
    m.unmount();
    eprintln!(
        "{files} small files + 8 MiB copied in {copied:?}; uploaded and committed after {:?}",
        started.elapsed()
    );

    let m = mount(
        &node.client,
        &key.id,
        &dir(tmp.path(), "cache2"),
        &mnt,
        false,
    );
    sh(Command::new("diff").arg("-r").arg(&src).arg(&mnt));
    let expected: usize = (0..files)
        .map(|i| format!("small file {i}\n").len())
        .sum::<usize>()
        + big.len();
    // The mount's figure is the oracle's to the byte (docs/FORMAT.md §7): the contents
    // (the small files are all different) plus the manifests, measured on the node.
    let root = xattr(&mnt, "user.pxfs.root");
    let measured = rt
        .block_on(pxfs::oracle::measure_root(
            &node.client,
            &root,
            &pxfs::oracle::Limits::default(),
        ))
        .unwrap();
    assert_eq!(measured.usage - measured.manifest_bytes, expected as u64);
    assert_eq!(xattr(&mnt, "user.pxfs.usage"), measured.usage.to_string());
    m.unmount();
}

/// `repo/gc` on the node at `url`: its answer (one JSON line per block removed).
fn repo_gc(rt: &tokio::runtime::Runtime, url: &str) -> String {
    rt.block_on(async {
        reqwest::Client::new()
            .post(format!("{url}/api/v0/repo/gc"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
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

/// Every file under `root` (the node's blockstore, the mount's staging directory).
fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

/// Which of `markers` some file under `root` holds (a plaintext tree stores a small file's
/// bytes as they are: a marker found in the node's blockstore was uploaded).
fn markers_under(root: &Path, markers: &[String]) -> Vec<String> {
    let blobs: Vec<Vec<u8>> = files_under(root)
        .iter()
        .filter_map(|f| std::fs::read(f).ok())
        .collect();
    markers
        .iter()
        .filter(|m| {
            blobs
                .iter()
                .any(|b| b.windows(m.len()).any(|w| w == m.as_bytes()))
        })
        .cloned()
        .collect()
}

/// Issue #41: churn (files created, some renamed, all deleted, within seconds) cancels
/// itself in the write-back delay: none of it reaches the node or stays staged. A file
/// kept is uploaded once its delay ends; a file fsynced is on the node when fsync returns.
#[test]
fn files_deleted_within_the_write_back_delay_never_reach_the_node_and_fsync_does_not_wait() {
    require_mount();
    let tmp = tempfile::tempdir().unwrap();
    let repo = dir(tmp.path(), "repo");
    let node = start_node(&repo);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let key = rt.block_on(node.client.key_gen("token-1")).unwrap();
    let (cache, mnt) = (dir(tmp.path(), "cache"), dir(tmp.path(), "mnt"));
    let delay = Duration::from_secs(4);
    let m = mount_with(&node.client, &key.id, &cache, &mnt, false, |c| {
        c.writeback_delay = delay;
    });
    let nonce = format!("{:x}", rand_nonce());
    let marker = |what: &str, i: usize| format!("pxfs-churn-{nonce}-{what}-{i}-end");
    let work = dir(&mnt, "churn");

    // A round of the issue's churn: 300 files of 100 B to 30 KB, a third renamed, all deleted.
    let started = Instant::now();
    let gone: Vec<String> = (0..300).map(|i| marker("gone", i)).collect();
    for (i, m) in gone.iter().enumerate() {
        let mut body = m.clone().into_bytes();
        body.resize(100 + i * 100, b'.');
        std::fs::write(work.join(format!("f{i}")), &body).unwrap();
    }
    for i in (0..300).step_by(3) {
        std::fs::rename(work.join(format!("f{i}")), work.join(format!("r{i}"))).unwrap();
    }
    for i in 0..300 {
        let name = if i % 3 == 0 { "r" } else { "f" };
        std::fs::remove_file(work.join(format!("{name}{i}"))).unwrap();
    }
    // Kept: uploaded after its delay, not before.
    let kept = marker("kept", 0);
    std::fs::write(work.join("kept"), &kept).unwrap();
    let churned_in = started.elapsed();
    assert!(
        churned_in < delay / 2,
        "the churn took {churned_in:?}, too long for the {delay:?} delay to prove anything"
    );
    assert!(
        markers_under(&repo, std::slice::from_ref(&kept)).is_empty(),
        "a closed file was uploaded before its write-back delay ended"
    );

    // fsync: on the node when it returns, well before the delay would end.
    let synced = marker("synced", 0);
    let fsync_started = Instant::now();
    let mut f = std::fs::File::create(work.join("synced")).unwrap();
    f.write_all(synced.as_bytes()).unwrap();
    f.sync_all().unwrap();
    let fsync_took = fsync_started.elapsed();
    drop(f);
    assert_eq!(
        markers_under(&repo, std::slice::from_ref(&synced)),
        vec![synced.clone()],
        "fsync returned before the file was on the node"
    );
    assert!(
        fsync_took < delay,
        "fsync took {fsync_took:?}: it waited out the write-back delay"
    );

    // The delay ends: the kept file goes up, the deleted ones never do, and none of them
    // is left in staging.
    let deadline = Instant::now() + delay + Duration::from_secs(20);
    while markers_under(&repo, std::slice::from_ref(&kept)).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the kept file was not uploaded after its delay"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let staged_leftovers = markers_under(&cache.join("staging"), &gone);
    assert!(
        staged_leftovers.is_empty(),
        "{} deleted files still staged after their delay, e.g. {:?}",
        staged_leftovers.len(),
        staged_leftovers.first()
    );
    let uploaded = markers_under(&repo, &gone);
    assert!(
        uploaded.is_empty(),
        "{} of 300 files deleted within the delay reached the node, e.g. {:?}",
        uploaded.len(),
        uploaded.first()
    );
    let unmount_started = Instant::now();
    m.unmount();
    assert!(
        unmount_started.elapsed() < Duration::from_secs(10),
        "the unmount drain took {:?}",
        unmount_started.elapsed()
    );
    assert!(
        markers_under(&repo, &gone).is_empty(),
        "the unmount drain uploaded deleted files"
    );
}

/// A proxy in front of the node at `url` that holds the request carrying `needle` for
/// `hold` before passing it on, and a client through it.
fn holding_the_request_with(
    url: &str,
    needle: &str,
    hold: Duration,
) -> (proxy::Proxy, pxfs::storage::NodeClient) {
    let slow = proxy::Proxy::start_delaying(
        url,
        Some(proxy::Delay {
            needle: needle.as_bytes().to_vec(),
            delay: hold,
        }),
    );
    let client = pxfs::storage::NodeClient::from_url(&slow.url(), "/api/v0");
    (slow, client)
}

/// Issue #41: a large file closed and deleted while its upload is in flight to a slow node
/// is cancelled there: the node never gets the whole of it, nothing of it stays staged, the
/// user sees no error, and what is written next is committed as usual.
#[test]
fn an_upload_in_flight_of_a_file_deleted_meanwhile_is_abandoned() {
    require_mount();
    let tmp = tempfile::tempdir().unwrap();
    let repo = dir(tmp.path(), "repo");
    let node = start_node(&repo);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let key = rt.block_on(node.client.key_gen("token-1")).unwrap();
    let nonce = format!("{:x}", rand_nonce());
    let (head, tail) = (
        format!("pxfs-inflight-{nonce}-head"),
        format!("pxfs-inflight-{nonce}-tail-end"),
    );
    // The node is slow for the request that carries the big file's first bytes (and only
    // for it): it holds them for `hold` before passing them on.
    let hold = Duration::from_secs(15);
    let (slow, client) = holding_the_request_with(&node.url, &head, hold);
    let (cache, mnt) = (dir(tmp.path(), "cache"), dir(tmp.path(), "mnt"));
    let m = mount_with(&client, &key.id, &cache, &mnt, false, |_| {});
    let work = dir(&mnt, "work");

    // 192 MiB: its first 4 KiB repeat `head` (one read of the proxy holds a whole one), its
    // last bytes are `tail`, within the last block the node would store. Adds go on past
    // the held one up to 24 batches of 2 MiB from it (`chunked::Adds`), and all of those may
    // reach the node: it is four times that, so that what stops after the delete shows.
    let size = 192usize << 20;
    let mut big = vec![0u8; size];
    for (i, b) in big.iter_mut().enumerate() {
        *b = (i as u32).wrapping_mul(2654435761).rotate_right(13) as u8;
    }
    for at in (0..4096).step_by(head.len()) {
        big[at..at + head.len()].copy_from_slice(head.as_bytes());
    }
    big[size - tail.len()..].copy_from_slice(tail.as_bytes());
    let path = work.join("big");
    let started = Instant::now();
    // Written out of order, so that it is uploaded from its staged file after the close
    // (an unlink already stops a live upload).
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::create(&path).unwrap();
        f.write_all_at(&big[4096..], 4096).unwrap();
        f.write_all_at(&big[..4096], 0).unwrap();
    }
    let wrote_in = started.elapsed();
    assert!(
        wrote_in < hold / 2,
        "writing took {wrote_in:?}, too long for the node's {hold:?} hold to prove anything"
    );
    let deadline = Instant::now() + hold / 4;
    while slow.delayed() == 0 {
        assert!(
            Instant::now() < deadline,
            "the big file's upload never reached the node"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // In flight (held by the slow node): deleted now.
    let sent_at_delete = slow.bytes_to_server();
    std::fs::remove_file(&path).unwrap();

    // Once the node would have taken it all, it has had little of it and not its end.
    std::thread::sleep(hold + Duration::from_secs(4));
    let sent = slow.bytes_to_server() - sent_at_delete;
    assert!(
        sent < size as u64 / 2,
        "{sent} bytes reached the node after the delete of a {size}-byte file in flight"
    );
    assert!(
        markers_under(&repo, std::slice::from_ref(&tail)).is_empty(),
        "the deleted file reached the node whole"
    );
    assert!(
        markers_under(&cache.join("staging"), &[head.clone(), tail.clone()]).is_empty(),
        "the deleted file is still staged"
    );

    // Nothing stuck: a file written next is durable at its fsync, and the drain is quick.
    let next = format!("pxfs-inflight-{nonce}-next");
    let mut f = std::fs::File::create(work.join("next")).unwrap();
    f.write_all(next.as_bytes()).unwrap();
    f.sync_all().unwrap();
    drop(f);
    assert_eq!(
        markers_under(&repo, std::slice::from_ref(&next)),
        vec![next.clone()],
        "fsync returned before the next file was on the node"
    );
    let unmount_started = Instant::now();
    m.unmount();
    assert!(
        unmount_started.elapsed() < Duration::from_secs(10),
        "the unmount drain took {:?}",
        unmount_started.elapsed()
    );
    assert!(markers_under(&repo, std::slice::from_ref(&tail)).is_empty());
}

/// fsync of a file a commit carried (taken while its upload was out) returns only once a
/// later commit holds its content: what the node publishes then has the file whole, even
/// if the machine is gone the moment fsync returns.
#[test]
fn fsync_of_a_file_a_commit_carried_waits_for_a_commit_that_holds_it() {
    require_mount();
    let tmp = tempfile::tempdir().unwrap();
    let node = start_node(&dir(tmp.path(), "repo"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let key = rt.block_on(node.client.key_gen("token-1")).unwrap();
    let tail = format!("pxfs-carried-{:x}-tail", rand_nonce());
    // The add that carries the file's last bytes is held: commits meanwhile carry it.
    let hold = Duration::from_secs(4);
    let (slow, client) = holding_the_request_with(&node.url, &tail, hold);
    let mnt = dir(tmp.path(), "mnt");
    // While uploads run, commits every second (the default is every 5 s).
    let m = mount_with(
        &client,
        &key.id,
        &dir(tmp.path(), "cache1"),
        &mnt,
        false,
        |c| c.commit_max_delay = Duration::from_secs(1),
    );
    let work = dir(&mnt, "work");
    std::fs::write(work.join("before"), b"a first commit").unwrap();
    std::fs::File::open(&work).unwrap().sync_all().unwrap();

    let size = 8usize << 20;
    let mut data: Vec<u8> = (0..size)
        .map(|i| (i as u32).wrapping_mul(2654435761).rotate_right(11) as u8)
        .collect();
    data[size - tail.len()..].copy_from_slice(tail.as_bytes());
    let started = Instant::now();
    {
        let mut f = std::fs::File::create(work.join("big")).unwrap();
        f.write_all(&data).unwrap();
        f.sync_all().unwrap();
    }
    let took = started.elapsed();
    assert!(slow.delayed() > 0, "the last bytes were never held");
    assert!(
        took >= hold,
        "fsync returned in {took:?}, before the held add ended"
    );
    // The machine is gone: nothing more reaches the node.
    slow.cut();

    let seen = dir(tmp.path(), "seen");
    let other = mount_with(
        &node.client,
        &key.id,
        &dir(tmp.path(), "cache2"),
        &seen,
        false,
        |_| {},
    );
    let got = std::fs::read(seen.join("work/big")).unwrap_or_default();
    assert!(
        got.len() == data.len() && got == data,
        "after fsync the node published {} of the file's {} bytes",
        got.len(),
        data.len()
    );
    other.unmount();
    drop(m);
}

/// A commit of a few pages sends them in its document's add: a rename is one `add` and one
/// `name/publish`, and a fresh cache finds the tree it published.
#[test]
fn a_small_commit_adds_its_pages_with_its_document_in_one_request() {
    require_mount();
    let tmp = tempfile::tempdir().unwrap();
    let node = start_node(&dir(tmp.path(), "repo"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let key = rt.block_on(node.client.key_gen("token-1")).unwrap();
    let watched = proxy::Proxy::start(&node.url);
    let client = pxfs::storage::NodeClient::from_url(&watched.url(), "/api/v0");
    let mnt = dir(tmp.path(), "mnt");
    let m = mount_with(
        &client,
        &key.id,
        &dir(tmp.path(), "cache1"),
        &mnt,
        true,
        |_| {},
    );
    let work = dir(&mnt, "work");
    for i in 0..20 {
        std::fs::write(work.join(format!("f{i}")), format!("file {i}\n")).unwrap();
    }
    std::fs::File::open(&work).unwrap().sync_all().unwrap();

    let before = watched.requests().len();
    std::fs::rename(work.join("f7"), work.join("seven")).unwrap();
    std::fs::File::open(&work).unwrap().sync_all().unwrap();
    let commit: Vec<String> = watched.requests()[before..].to_vec();
    let count = |path: &str| {
        commit
            .iter()
            .filter(|l| {
                l.contains(&format!("/api/v0/{path}?")) || l.contains(&format!("/api/v0/{path} "))
            })
            .count()
    };
    assert_eq!(count("add"), 1, "the commit's requests: {commit:#?}");
    assert_eq!(
        count("name/publish"),
        1,
        "the commit's requests: {commit:#?}"
    );
    m.unmount();

    let m = mount_with(
        &node.client,
        &key.id,
        &dir(tmp.path(), "cache2"),
        &mnt,
        true,
        |_| {},
    );
    let work = mnt.join("work");
    assert_eq!(
        std::fs::read_to_string(work.join("seven")).unwrap(),
        "file 7\n"
    );
    assert!(!work.join("f7").exists());
    assert_eq!(std::fs::read_dir(&work).unwrap().count(), 20);
    m.unmount();
}

/// Different markers in every run (the node's repository is new, but a stale one must not
/// make the test pass).
fn rand_nonce() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        ^ u128::from(std::process::id())
}

/// `repo/gc` on the node keeps every block of the current tree: after a few rounds of
/// overwrites (each committed, unpinning what it superseded) and a collection that frees
/// the old versions, a fresh cache reads the whole tree back as it was last written.
#[test]
fn after_overwrites_and_a_gc_a_fresh_cache_reads_the_current_tree() {
    require_mount();
    let tmp = tempfile::tempdir().unwrap();
    let node = start_node(&dir(tmp.path(), "repo"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let key = rt.block_on(node.client.key_gen("token-1")).unwrap();
    let (src, mnt) = (dir(tmp.path(), "src"), dir(tmp.path(), "mnt"));
    let cache = dir(tmp.path(), "cache1");
    let content = |round: u32, len: u32| -> Vec<u8> {
        (0..len)
            .map(|i| (i.wrapping_mul(2654435761).wrapping_add(round * 7919) >> 11) as u8)
            .collect()
    };
    for round in 0..3u32 {
        let d = dir(&src, "d");
        std::fs::write(src.join("big"), content(round, 3 << 20)).unwrap();
        for i in 0..10 {
            // Half the small files change every round, half only in the first.
            if round == 0 || i % 2 == 0 {
                std::fs::write(d.join(format!("f{i}")), format!("round {round} file {i}\n"))
                    .unwrap();
            }
        }
        let m = mount(&node.client, &key.id, &cache, &mnt, true);
        sh(Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", src.display()))
            .arg(&mnt));
        m.unmount();
    }

    let before = rt.block_on(node.client.repo_stat()).unwrap();
    let answer = repo_gc(&rt, &node.url);
    let removed = answer.lines().filter(|l| l.contains("\"Key\":{")).count();
    assert!(!answer.contains("Error"), "{answer}");
    let after = rt.block_on(node.client.repo_stat()).unwrap();
    assert!(
        removed > 0 && after.repo_size + (4 << 20) <= before.repo_size,
        "gc freed the superseded versions: {removed} blocks, {} -> {} bytes",
        before.repo_size,
        after.repo_size
    );

    let m = mount(
        &node.client,
        &key.id,
        &dir(tmp.path(), "cache2"),
        &mnt,
        true,
    );
    sh(Command::new("diff").arg("-r").arg(&src).arg(&mnt));
    m.unmount();
}

/// Bytes no two 128 KiB chunks of which are alike (`seed` tells files and rounds apart).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// One change applied alike to a file in the mount and to its local twin.
enum Change {
    Write(u64, Vec<u8>),
    Append(Vec<u8>),
    Truncate(u64),
}

fn change_both(files: [&Path; 2], change: &Change) {
    use std::os::unix::fs::FileExt;
    for path in files {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .append(matches!(change, Change::Append(_)))
            .open(path)
            .unwrap();
        match change {
            Change::Write(at, bytes) => f.write_all_at(bytes, *at).unwrap(),
            Change::Append(bytes) => (&f).write_all(bytes).unwrap(),
            Change::Truncate(len) => f.set_len(*len).unwrap(),
        }
        f.sync_all().unwrap();
    }
}

/// Issue #39 through the kernel on a real node: a file changed in place on a fresh cache
/// fetches only the chunks its change covers in part (here two, around a chunk boundary),
/// not the file; partial rewrites, an append, truncates and holes then read back equal to
/// a local twin after a collection (`repo/gc`) and a remount on another fresh cache, the
/// sparse file copies out sparse, and the node keeps little beyond the tree's usage.
#[test]
fn in_place_changes_on_a_fresh_cache_fetch_their_chunks_and_survive_a_gc() {
    const MIB: u64 = 1 << 20;
    const CHUNK: u64 = 128 << 10;
    require_mount();
    let tmp = tempfile::tempdir().unwrap();
    let node = start_node(&dir(tmp.path(), "repo"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let key = rt.block_on(node.client.key_gen("token-1")).unwrap();
    let (local, mnt) = (dir(tmp.path(), "local"), dir(tmp.path(), "mnt"));
    let (img, sparse) = (local.join("img"), local.join("sparse"));
    std::fs::write(&img, noise(1, (40 * MIB) as usize)).unwrap();

    let m = mount(
        &node.client,
        &key.id,
        &dir(tmp.path(), "cache1"),
        &mnt,
        true,
    );
    sh(Command::new("cp").arg(&img).arg(&mnt));
    std::fs::File::create(&sparse).unwrap();
    std::fs::File::create(mnt.join("sparse")).unwrap();
    let both = |name: &str| [local.join(name), mnt.join(name)];
    let [s0, s1] = both("sparse");
    change_both([&s0, &s1], &Change::Truncate(64 * MIB));
    change_both([&s0, &s1], &Change::Write(40 * MIB + 3, b"X".to_vec()));
    m.unmount();

    // A fresh cache, the node behind a proxy that counts what it sends.
    let proxy = proxy::Proxy::start(&node.url);
    let client = pxfs::storage::NodeClient::from_url(&proxy.url(), "/api/v0");
    let m = mount(&client, &key.id, &dir(tmp.path(), "cache2"), &mnt, true);
    sh(Command::new("ls").arg("-l").arg(&mnt));
    let [i0, i1] = both("img");
    let before = proxy.bytes_from_server();
    change_both([&i0, &i1], &Change::Write(20 * MIB - 2048, noise(2, 4096)));
    let fetched = proxy.bytes_from_server() - before;
    assert!(
        (2 * CHUNK..2 * CHUNK + 64 * 1024).contains(&fetched),
        "a 4 KiB change over a chunk boundary fetches its two chunks, not the 40 MiB file: \
         {fetched} bytes"
    );
    let changes = [
        Change::Write(5 * MIB + 7, noise(3, 10)),
        Change::Append(noise(4, 300 << 10)),
        Change::Write(39 * MIB, noise(5, (2 * MIB) as usize)),
        Change::Truncate(30 * MIB + 12345),
        Change::Truncate(33 * MIB),
        Change::Write(32 * MIB + 100, noise(6, 4096)),
    ];
    for c in &changes {
        change_both([&i0, &i1], c);
    }
    change_both([&s0, &s1], &Change::Write(10 * MIB, noise(7, 4096)));
    change_both([&s0, &s1], &Change::Truncate(50 * MIB));
    sh(Command::new("cmp").arg(&i0).arg(&i1));
    m.unmount();

    let answer = repo_gc(&rt, &node.url);
    assert!(!answer.contains("Error"), "{answer}");

    let m = mount(
        &node.client,
        &key.id,
        &dir(tmp.path(), "cache3"),
        &mnt,
        true,
    );
    for name in ["img", "sparse"] {
        let [a, b] = both(name);
        sh(Command::new("cmp").arg(&a).arg(&b));
    }
    let out = local.join("sparse-out");
    sh(Command::new("cp")
        .arg("--sparse=always")
        .arg(mnt.join("sparse"))
        .arg(&out));
    sh(Command::new("cmp").arg(&out).arg(&s0));
    let allocated = std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&out).unwrap()) * 512;
    assert!(
        allocated <= MIB,
        "the copy out is sparse: {allocated} bytes allocated"
    );
    let usage: u64 = xattr(&mnt, "user.pxfs.usage").parse().unwrap();
    let repo = rt.block_on(node.client.repo_stat()).unwrap().repo_size;
    assert!(
        usage < 34 * MIB && repo <= usage + usage / 2,
        "after the collection the node holds {repo} bytes for a tree of usage {usage}"
    );
    m.unmount();
}
